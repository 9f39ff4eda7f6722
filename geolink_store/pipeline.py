"""Bulk encoding: region -> H3 cells -> chips + OSM graphs -> GeoLink -> ``cells`` and ``patches`` rows in the store.

The region is processed partition by partition (cells grouped by a coarse H3 parent), each partition reading only
its own OSM and streaming batches of cells through the model, so memory stays bounded whatever the region's size.
Every batch is written as atomic upserts (patches first, then cells); a cell counts as done once its ``cells`` row
exists, so an ingest killed at any moment and run again skips finished cells and rewrites the rest, ending with
exactly the rows of an uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from datetime import datetime, timezone

import geopandas as gpd
import numpy as np
import pyarrow as pa
import shapely
import torch
from h3.api import basic_int as h3
from pyproj import CRS

from model import NODE_TYPES, GeoLink, fingerprint

from .chips import chip_for_cell, transformer
from .errors import GeolinkError
from .graph import GraphBuilder
from .imagery import Chip, ChipTally, open_imagery, read_chips
from .sources.osm import OSMIndex, read_osm
from .store import Store, cells_schema, parent_column, parent_resolutions, patches_schema
from .text import encoder_name
from .tiling import cell_geometries, cell_lonlat, check_resolution, parents, region_cells

WGS84 = CRS.from_epsg(4326)
PARTITION_LEVELS = 3
"""Cells are processed in partitions of their parent this many resolutions coarser (about 343 cells each)."""


@dataclass(frozen=True)
class IngestSettings:
    """How to encode a region.

    Attributes:
        res: H3 resolution of the cells (one chip each).
        fine_res: resolution of the fine-grained patch cells (default ``res + 2``).
        batch_size: cells per model batch (and per store commit).
        min_valid: cells whose chip holds less than this share of valid imagery are skipped and counted.
        max_fusion_nodes: optional deterministic cap on OSM nodes per chip in the fusion block.
        bf16: run the model under bfloat16 autocast (default: on a GPU only).
        overwrite: re-encode cells that the store already holds for this model (default: resume, skip them).
        osm_only: cells without (enough) imagery but with OSM get a row with their ``osm`` vector alone (``image``
            and ``fused`` null) instead of being skipped.
    """

    res: int = 9
    fine_res: int | None = None
    batch_size: int = 16
    min_valid: float = 0.5
    max_fusion_nodes: int | None = None
    bf16: bool | None = None
    overwrite: bool = False
    osm_only: bool = False

    @property
    def patch_res(self) -> int:
        return self.res + 2 if self.fine_res is None else self.fine_res


@dataclass
class IngestReport:
    """What an ingest did."""

    model_id: str
    cells_in_region: int = 0
    cells_without_imagery: int = 0
    cells_already_stored: int = 0
    cells_encoded: int = 0
    cells_too_sparse: int = 0
    cells_with_osm: int = 0
    cells_osm_only: int = 0
    patches_written: int = 0
    seconds: float = 0.0
    skipped_cells: list[int] = field(default_factory=list)

    @property
    def cells_per_s(self) -> float:
        return self.cells_encoded / self.seconds if self.seconds else 0.0


Progress = Callable[[int], None]


def ingest(
    db: str,
    region: object,
    imagery: list[str],
    osm: str,
    *,
    model: GeoLink | None = None,
    model_name: str = "default",
    settings: IngestSettings | None = None,
    graph_builder: GraphBuilder | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> IngestReport:
    """Encode every cell of ``region`` covered by ``imagery`` into the store at ``db``.

    ``progress(total)`` may return a callback that receives the number of cells finished after each batch.
    """
    settings = settings or IngestSettings()
    check_resolution(settings.res)
    check_resolution(settings.patch_res, "fine resolution")
    if settings.patch_res <= settings.res:
        raise GeolinkError(f"the fine resolution ({settings.patch_res}) must be finer than --res ({settings.res})")
    model = (model or GeoLink.default()).eval()
    if not model.config.multimodal:
        raise GeolinkError("ingest needs a multimodal GeoLink checkpoint (this one is image-only)")
    started = datetime.now(timezone.utc)
    report = IngestReport(model_id=fingerprint(model))

    source = open_imagery(imagery)
    cells = region_cells(region, settings.res)
    report.cells_in_region = int(cells.size)
    covered = source.covered_cells(cells)
    report.cells_without_imagery = int(cells.size - covered.size)
    chip_crs = source.chip_crs(*(float(v[0]) for v in cell_lonlat(covered[:1])))
    builder = graph_builder or GraphBuilder()
    if builder.text_dim != model.config.osm_in_chans:
        raise GeolinkError(
            f"the tag text encoder gives {builder.text_dim}-d features but the model expects "
            f"{model.config.osm_in_chans}-d: use the model's text encoder"
        )

    if not Path(osm).exists():
        raise GeolinkError(f"OSM source not found: {osm}")
    store = Store.create_or_open(db)
    _check_store_widths(store, model)
    wanted = cells if settings.osm_only else covered
    todo = wanted if settings.overwrite else np.setdiff1d(wanted, store.existing_cells(report.model_id))
    report.cells_already_stored = int(wanted.size - todo.size)
    advance = progress(int(todo.size)) if progress else None
    device = next(model.parameters()).device
    dtype = torch.bfloat16 if (settings.bf16 if settings.bf16 is not None else device.type == "cuda") else torch.float32

    tally = ChipTally()
    for partition in _partitions(todo, settings.res):
        encoded_before = report.cells_encoded
        encoded_here: list[int] = []
        index = OSMIndex(_partition_osm(osm, partition), chip_crs)
        store.register_model(  # once the OSM of the first partition has been read: a bad source writes nothing
            report.model_id,
            name=model_name,
            architecture=model.config.architecture,
            config=json.loads(model.config.to_json()),
            text_encoder=encoder_name(builder.cache.encoder),
        )
        imaged = partition[np.isin(partition, covered)]
        for batch in _batched(read_chips(source, imaged, chip_crs, min_valid=settings.min_valid, tally=tally),
                              settings.batch_size):
            graphs = builder.build_many([(index.query(chip.spec.bounds), chip.spec) for chip in batch])
            images = torch.from_numpy(np.stack([chip.image for chip in batch])).to(device)
            out = model.encode(images, graphs, max_fusion_nodes=settings.max_fusion_nodes, dtype=dtype)
            patch_rows = _patch_rows(batch, out, settings, report.model_id)
            store.upsert("patches", patch_rows)
            store.upsert("cells", _cell_rows(
                [chip.cell for chip in batch], graphs, out.osm_region, out.has_osm, settings.res, report.model_id,
                [chip.source for chip in batch], _widths(model), image=out.image_global, fused=out.fused.mean(dim=1)))
            report.cells_encoded += len(batch)
            encoded_here += [chip.cell for chip in batch]
            report.cells_with_osm += int(out.has_osm.sum())
            report.patches_written += patch_rows.num_rows
            if advance:
                advance(len(batch))
        if settings.osm_only:
            without = np.setdiff1d(partition, np.asarray(encoded_here, dtype=np.int64))
            for cells_batch in np.array_split(without, max(1, -(-without.size // settings.batch_size))):
                report.cells_osm_only += _ingest_osm_only(
                    store, model, builder, index, cells_batch, chip_crs, settings.res, report.model_id
                )
        if advance:  # cells of the partition skipped for lack of imagery
            advance(partition.size - (report.cells_encoded - encoded_before))
    report.cells_too_sparse = tally.too_sparse
    report.cells_without_imagery += tally.no_imagery
    report.skipped_cells = tally.skipped_cells
    report.seconds = (datetime.now(timezone.utc) - started).total_seconds()
    return report


def _widths(model: GeoLink) -> dict[str, int]:
    """The width of each ``cells`` vector column for ``model``."""
    return {"image": model.embed_dim, "osm": model.config.region_dim, "fused": model.config.fusion_dim}


def _check_store_widths(store: Store, model: GeoLink) -> None:
    """Refuse a model whose vector widths differ from the store's (before anything is written)."""
    widths = _widths(model)
    if "cells" not in store.table_names():
        return
    for column, width in widths.items():
        stored = store.vector_width("cells", column)
        if stored != width:
            raise GeolinkError(
                f"the store's {column} vectors are {stored}-d but this model gives {width}-d: "
                "use another --db for this model"
            )


def _partitions(cells: np.ndarray, res: int) -> Iterator[np.ndarray]:
    """The cells grouped by their parent ``PARTITION_LEVELS`` resolutions coarser, in a stable order."""
    if not cells.size:
        return
    groups = parents(cells, max(0, res - PARTITION_LEVELS))
    order = np.lexsort((cells, groups))
    cells, groups = cells[order], groups[order]
    for chunk in np.split(cells, np.flatnonzero(np.diff(groups)) + 1):
        yield chunk


def _partition_osm(path: str, cells: np.ndarray) -> gpd.GeoDataFrame:
    """The OSM entities around a partition's chips (its hexagons' bounds grown by one cell in each direction)."""
    hexagons = shapely.union_all(cell_geometries(cells))
    west, south, east, north = hexagons.bounds
    pad = max(east - west, north - south) / max(1.0, np.sqrt(cells.size))
    return read_osm(path, (west - pad, south - pad, east + pad, north + pad), allow_empty=True)


def _batched(chips: Iterator[Chip], size: int) -> Iterator[list[Chip]]:
    batch: list[Chip] = []
    for chip in chips:
        batch.append(chip)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _ingest_osm_only(store: Store, model: GeoLink, builder: GraphBuilder, index: OSMIndex, cells: np.ndarray,
                     chip_crs: CRS, res: int, model_id: str) -> int:
    """Write OSM-only rows for the cells (without imagery) whose chip holds OSM; return how many."""
    if not cells.size:
        return 0
    specs = [chip_for_cell(int(cell), chip_crs) for cell in cells]
    graphs = builder.build_many([(index.query(spec.bounds), spec) for spec in specs])
    region, present = model.encode_osm(graphs)
    keep = present.numpy()
    if not keep.any():
        return 0
    store.upsert("cells", _cell_rows(
        cells[keep].tolist(), [g for g, k in zip(graphs, keep, strict=True) if k], region[present],
        present[present], res, model_id, ["osm-only"] * int(keep.sum()), _widths(model), image=None, fused=None))
    return int(keep.sum())


def _cell_rows(cells: list[int], graphs, osm_region: torch.Tensor, has_osm: torch.Tensor, res: int, model_id: str,
               sources: list[str], widths: dict[str, int], *, image: torch.Tensor | None,
               fused: torch.Tensor | None) -> pa.Table:
    """``cells`` rows; ``image`` and ``fused`` are None for cells encoded from OSM alone."""
    cells = np.asarray(cells, dtype=np.int64)
    lon, lat = cell_lonlat(cells)
    osm = osm_region.numpy()
    columns = {
        "h3": cells,
        "res": np.full(cells.size, res, dtype=np.int8),
        **{parent_column(k): parents(cells, k) for k in parent_resolutions(res)},
        "lon": lon,
        "lat": lat,
        "geometry": shapely.to_wkb(cell_geometries(cells)),
        "image": _vectors(image, widths["image"], cells.size),
        "osm": pa.array([row.tolist() if has else None for row, has in zip(osm, has_osm.tolist(), strict=True)],
                        type=pa.list_(pa.float32(), osm.shape[1])),
        "fused": _vectors(fused, widths["fused"], cells.size),
        **{f"n_{t}": np.array([g[t].num_nodes for g in graphs], dtype=np.int32) for t in NODE_TYPES},
        "source": sources,
        "model_id": [model_id] * cells.size,
        "created_at": pa.array([datetime.now(timezone.utc)] * cells.size, type=pa.timestamp("us", tz="UTC")),
    }
    return pa.Table.from_pydict(columns, schema=cells_schema(widths["image"], widths["osm"], widths["fused"], res))


def _patch_rows(batch: list[Chip], out, settings: IngestSettings, model_id: str) -> pa.Table:
    """Patch tokens averaged per fine cell, for the fine cells inside each chip's own hexagon."""
    rows_h3, rows_parent, image_rows, fused_rows = [], [], [], []
    for i, chip in enumerate(batch):
        fine = _patch_cells(chip, settings.patch_res, out.image_tokens.shape[1])
        inside = parents(fine, settings.res) == chip.cell
        unique, inverse = np.unique(fine[inside], return_inverse=True)
        for tokens, rows in ((out.image_tokens[i], image_rows), (out.fused[i], fused_rows)):
            selected = tokens[torch.from_numpy(inside)]
            sums = torch.zeros(unique.size, selected.size(1)).index_add_(0, torch.from_numpy(inverse), selected)
            counts = torch.bincount(torch.from_numpy(inverse), minlength=unique.size).unsqueeze(1)
            rows.append((sums / counts).numpy())
        rows_h3.append(unique)
        rows_parent.append(np.full(unique.size, chip.cell, dtype=np.int64))
    h3_ids = np.concatenate(rows_h3)
    image, fused = np.concatenate(image_rows), np.concatenate(fused_rows)
    columns = {
        "h3": h3_ids,
        "res": np.full(h3_ids.size, settings.patch_res, dtype=np.int8),
        "parent": np.concatenate(rows_parent),
        "image": _vectors(image, image.shape[1], len(image)),
        "fused": _vectors(fused, fused.shape[1], len(fused)),
        "model_id": [model_id] * h3_ids.size,
    }
    return pa.Table.from_pydict(columns, schema=patches_schema(image.shape[1], fused.shape[1]))


def _patch_cells(chip: Chip, fine_res: int, num_patches: int) -> np.ndarray:
    """The fine H3 cell under each patch centre of the chip (row-major over the patch grid)."""
    grid = int(round(num_patches**0.5))
    centres = (np.arange(grid) + 0.5) * chip.spec.size / grid
    cols, rows = np.meshgrid(centres, centres)
    xs, ys = chip.spec.transform @ (cols.ravel(), rows.ravel())
    lon, lat = transformer(chip.spec.crs, WGS84).transform(xs, ys)
    return np.array([h3.latlng_to_cell(y, x, fine_res) for x, y in zip(lon, lat, strict=True)], dtype=np.int64)


def _vectors(values: torch.Tensor | np.ndarray | None, width: int, rows: int) -> pa.FixedSizeListArray:
    """A fixed-width float32 vector column; all null when ``values`` is None."""
    if values is None:
        return pa.nulls(rows, type=pa.list_(pa.float32(), width))
    array = np.ascontiguousarray(np.asarray(values), dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(array.ravel()), width)
