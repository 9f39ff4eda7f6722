"""Bulk encoding: region -> H3 cells -> chips + OSM graphs -> GeoLink -> ``cells`` and ``patches`` rows in the store.

:func:`plan_ingest` checks the inputs and decides which cells to encode; an engine carries the plan out. Work comes
in partitions (cells grouped by a coarse H3 parent), each reading only its own OSM (:func:`partition_work`, the CPU
side) and streaming batches of cells through the model (:func:`encode_work`), so memory stays bounded whatever the
region's size. The :class:`LocalEngine` writes every batch as atomic upserts (patches first, then cells); a cell
counts as done once its ``cells`` row exists, so an ingest killed at any moment and run again skips finished cells
and rewrites the rest, ending with exactly the rows of an uninterrupted run. The Ray engine is in
:mod:`geolink_store.ingest.engines.ray`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import geopandas as gpd
import numpy as np
import pyarrow as pa
import shapely
import torch
from h3.api import basic_int as h3
from pyproj import CRS
from torch_geometric.data import HeteroData

from geolink_store.chips import Chip, ChipTally, chip_for_cell, read_chips, transformer
from geolink_store.constants import WGS84
from geolink_store.errors import GeolinkError
from geolink_store.graphs.builder import GraphBuilder
from geolink_store.graphs.text import encoder_name
from geolink_store.grid import cell_geometries, cell_lonlat, check_resolution, parents, region_cells
from geolink_store.sources.mosaic import ImagerySource, open_imagery
from geolink_store.sources.osm import OSMIndex, read_osm
from geolink_store.store.store import Store, cells_schema, parent_column, parent_resolutions, patches_schema
from model import NODE_TYPES, GeoLink, fingerprint


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
        partition_levels: cells are processed in partitions of their parent this many resolutions coarser (3:
            about 343 cells each); a partition reads its OSM once and is the unit of work of the Ray engine.
    """

    res: int = 9
    fine_res: int | None = None
    batch_size: int = 16
    min_valid: float = 0.5
    max_fusion_nodes: int | None = None
    bf16: bool | None = None
    overwrite: bool = False
    osm_only: bool = False
    partition_levels: int = 3

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

    def add_tally(self, tally: ChipTally) -> None:
        """Count the cells that chip reading skipped."""
        self.cells_too_sparse += tally.too_sparse
        self.cells_without_imagery += tally.no_imagery
        self.skipped_cells += tally.skipped_cells


Progress = Callable[[int], None]


@dataclass(frozen=True)
class Partition:
    """The unit of work: the cells to encode under one coarse H3 parent."""

    parent: int
    cells: np.ndarray
    imaged: np.ndarray
    """The cells that the imagery covers."""


@dataclass
class IngestPlan:
    """A checked ingest: what to encode and with what, decided before anything is written.

    Every engine (local, Ray) starts from the same plan, so they refuse the same bad input with the same message and
    encode exactly the same cells.
    """

    store: Store
    model: GeoLink
    model_name: str
    settings: IngestSettings
    imagery: list[str]
    source: ImagerySource
    osm: str
    covered: np.ndarray
    chip_crs: CRS
    builder: GraphBuilder
    todo: np.ndarray
    dtype: torch.dtype
    report: IngestReport

    def partitions(self) -> Iterator[Partition]:
        """The cells to encode, grouped by their coarse parent (see :attr:`IngestSettings.partition_levels`)."""
        return partition_cells(
            self.todo, np.isin(self.todo, self.covered), self.settings.res, self.settings.partition_levels
        )

    def register_model(self) -> None:
        """Record the model in the store's ``models`` table (a no-op once it is there)."""
        self.store.register_model(
            self.report.model_id,
            name=self.model_name,
            architecture=self.model.config.architecture,
            config=json.loads(self.model.config.to_json()),
            text_encoder=encoder_name(self.builder.cache.encoder),
        )

    def widths(self) -> dict[str, int]:
        """The width of each ``cells`` vector column."""
        return _widths(self.model)


def plan_ingest(
    db: str,
    region: object,
    imagery: list[str],
    osm: str,
    *,
    model: GeoLink | None = None,
    model_name: str = "default",
    settings: IngestSettings | None = None,
    graph_builder: GraphBuilder | None = None,
) -> IngestPlan:
    """Check the inputs and decide which cells to encode; opens (or creates) the store but writes no rows."""
    settings = settings or IngestSettings()
    check_resolution(settings.res)
    check_resolution(settings.patch_res, "fine resolution")
    if settings.patch_res <= settings.res:
        raise GeolinkError(
            f"the fine resolution ({settings.patch_res}) must be finer than --res ({settings.res})"
        )
    model = (model or GeoLink.default()).eval()
    if not model.config.multimodal:
        raise GeolinkError("ingest needs a multimodal GeoLink checkpoint (this one is image-only)")
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
    return IngestPlan(
        store=store,
        model=model,
        model_name=model_name,
        settings=settings,
        imagery=list(imagery),
        source=source,
        osm=osm,
        covered=covered,
        chip_crs=chip_crs,
        builder=builder,
        todo=todo,
        dtype=encode_dtype(settings, next(model.parameters()).device),
        report=report,
    )


def encode_dtype(settings: IngestSettings, device: torch.device) -> torch.dtype:
    """The autocast dtype of the model: bfloat16 when asked, or by default on a GPU; float32 otherwise."""
    bf16 = settings.bf16 if settings.bf16 is not None else device.type == "cuda"
    return torch.bfloat16 if bf16 else torch.float32


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
    engine: Engine | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> IngestReport:
    """Encode every cell of ``region`` covered by ``imagery`` into the store at ``db``.

    Args:
        engine: where the work runs: :class:`LocalEngine` (default, this process) or
            :class:`~geolink_store.ingest.engines.ray.RayEngine` (a Ray cluster).
        progress: ``progress(total)`` may return a callback that receives the number of cells finished as work
            completes.
    """
    started = time.perf_counter()
    plan = plan_ingest(
        db,
        region,
        imagery,
        osm,
        model=model,
        model_name=model_name,
        settings=settings,
        graph_builder=graph_builder,
    )
    (engine or LocalEngine()).run(plan, progress(int(plan.todo.size)) if progress else None)
    plan.report.seconds = time.perf_counter() - started
    return plan.report


class Engine(Protocol):
    """Carries out an :class:`IngestPlan`, counting what it did in ``plan.report``."""

    def run(self, plan: IngestPlan, advance: Progress | None) -> None: ...


@dataclass(frozen=True)
class LocalEngine:
    """Encode in this process, partition by partition, each batch committed as soon as it is encoded."""

    def run(self, plan: IngestPlan, advance: Progress | None) -> None:
        tally = ChipTally()
        for partition in plan.partitions():
            image_cells = 0
            for work in partition_work(
                plan.source, plan.osm, partition, plan.chip_crs, plan.builder, plan.settings, tally
            ):
                rows = encode_work(plan.model, work, plan.settings, plan.report.model_id, plan.dtype)
                plan.register_model()  # after the partition's OSM was read: a bad source writes nothing
                if rows.patches is not None:
                    plan.store.upsert("patches", rows.patches)
                plan.store.upsert("cells", rows.cells)
                rows.add_to(plan.report)
                if isinstance(work, ImageBatch):
                    image_cells += len(work.chips)
                    if advance:
                        advance(len(work.chips))
            if advance:  # cells of the partition encoded from OSM alone or skipped for lack of imagery
                advance(partition.cells.size - image_cells)
        plan.report.add_tally(tally)


@dataclass
class ImageBatch:
    """Chips of cells with imagery and the OSM graph of each chip."""

    chips: list[Chip]
    graphs: list[HeteroData]


@dataclass
class OsmOnlyBatch:
    """Cells without (enough) imagery whose chip footprint holds OSM, with their graphs."""

    cells: np.ndarray
    graphs: list[HeteroData]


@dataclass
class EncodedRows:
    """Store rows for one batch: ``patches`` (None for OSM-only cells) and ``cells``."""

    patches: pa.Table | None
    cells: pa.Table
    with_osm: int
    osm_only: bool

    def add_to(self, report: IngestReport) -> None:
        """Count these rows in ``report``."""
        if self.osm_only:
            report.cells_osm_only += self.cells.num_rows
            return
        report.cells_encoded += self.cells.num_rows
        report.cells_with_osm += self.with_osm
        report.patches_written += self.patches.num_rows if self.patches is not None else 0


def partition_work(
    source: ImagerySource,
    osm: str,
    partition: Partition,
    chip_crs: CRS,
    builder: GraphBuilder,
    settings: IngestSettings,
    tally: ChipTally,
) -> Iterator[ImageBatch | OsmOnlyBatch]:
    """The CPU side of one partition, batch by batch: its OSM read once, chips read, graphs built.

    The chips of the cells the imagery covers come first; with ``settings.osm_only`` the partition's other cells
    follow as :class:`OsmOnlyBatch` es. Skipped cells are counted in ``tally``.
    """
    index = OSMIndex(partition_osm(osm, partition.cells), chip_crs)
    read: list[int] = []
    for batch in _batched(
        read_chips(source, partition.imaged, chip_crs, min_valid=settings.min_valid, tally=tally),
        settings.batch_size,
    ):
        read += [chip.cell for chip in batch]
        yield ImageBatch(
            batch, builder.build_many([(index.query(chip.spec.bounds), chip.spec) for chip in batch])
        )
    if not settings.osm_only:
        return
    without = np.setdiff1d(partition.cells, np.asarray(read, dtype=np.int64))
    for cells in np.array_split(without, max(1, -(-without.size // settings.batch_size))):
        specs = [chip_for_cell(int(cell), chip_crs) for cell in cells]
        graphs = builder.build_many([(index.query(spec.bounds), spec) for spec in specs])
        present = np.array([any(g[t].num_nodes for t in NODE_TYPES) for g in graphs], dtype=bool)
        if present.any():
            yield OsmOnlyBatch(cells[present], [g for g, keep in zip(graphs, present, strict=True) if keep])


@torch.no_grad()
def encode_work(
    model: GeoLink,
    work: ImageBatch | OsmOnlyBatch,
    settings: IngestSettings,
    model_id: str,
    dtype: torch.dtype,
) -> EncodedRows:
    """The model side of one batch: encode it and shape the store rows."""
    widths = _widths(model)
    if isinstance(work, OsmOnlyBatch):
        region, present = model.encode_osm(work.graphs)
        return EncodedRows(
            None,
            _cell_rows(
                work.cells.tolist(),
                work.graphs,
                region,
                present,
                settings.res,
                model_id,
                ["osm-only"] * work.cells.size,
                widths,
                image=None,
                fused=None,
            ),
            with_osm=int(present.sum()),
            osm_only=True,
        )
    device = next(model.parameters()).device
    images = torch.from_numpy(np.stack([chip.image for chip in work.chips])).to(device)
    out = model.encode(images, work.graphs, max_fusion_nodes=settings.max_fusion_nodes, dtype=dtype)
    cells = _cell_rows(
        [chip.cell for chip in work.chips],
        work.graphs,
        out.osm_region,
        out.has_osm,
        settings.res,
        model_id,
        [chip.source for chip in work.chips],
        widths,
        image=out.image_global,
        fused=out.fused.mean(dim=1),
    )
    return EncodedRows(
        _patch_rows(work.chips, out, settings, model_id),
        cells,
        with_osm=int(out.has_osm.sum()),
        osm_only=False,
    )


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


def partition_cells(cells: np.ndarray, imaged: np.ndarray, res: int, levels: int) -> Iterator[Partition]:
    """The cells grouped by their parent ``levels`` resolutions coarser, in a stable order; ``imaged`` is a mask
    over ``cells`` of those the imagery covers.
    """
    if not cells.size:
        return
    groups = parents(cells, max(0, res - levels))
    order = np.lexsort((cells, groups))
    cells, groups, imaged = cells[order], groups[order], imaged[order]
    starts = np.flatnonzero(np.diff(groups)) + 1
    for chunk, mask, group in zip(
        np.split(cells, starts), np.split(imaged, starts), np.split(groups, starts), strict=True
    ):
        yield Partition(int(group[0]), chunk, chunk[mask])


def partition_osm(path: str, cells: np.ndarray) -> gpd.GeoDataFrame:
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


def _cell_rows(
    cells: list[int],
    graphs,
    osm_region: torch.Tensor,
    has_osm: torch.Tensor,
    res: int,
    model_id: str,
    sources: list[str],
    widths: dict[str, int],
    *,
    image: torch.Tensor | None,
    fused: torch.Tensor | None,
) -> pa.Table:
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
        "osm": pa.array(
            [row.tolist() if has else None for row, has in zip(osm, has_osm.tolist(), strict=True)],
            type=pa.list_(pa.float32(), osm.shape[1]),
        ),
        "fused": _vectors(fused, widths["fused"], cells.size),
        **{f"n_{t}": np.array([g[t].num_nodes for g in graphs], dtype=np.int32) for t in NODE_TYPES},
        "source": sources,
        "model_id": [model_id] * cells.size,
        "created_at": pa.array([datetime.now(UTC)] * cells.size, type=pa.timestamp("us", tz="UTC")),
    }
    return pa.Table.from_pydict(
        columns, schema=cells_schema(widths["image"], widths["osm"], widths["fused"], res)
    )


def _patch_rows(batch: list[Chip], out, settings: IngestSettings, model_id: str) -> pa.Table:
    """Patch tokens averaged per fine cell, for the fine cells inside each chip's own hexagon."""
    rows_h3, rows_parent, image_rows, fused_rows = [], [], [], []
    for i, chip in enumerate(batch):
        fine = _patch_cells(chip, settings.patch_res, out.image_tokens.shape[1])
        inside = parents(fine, settings.res) == chip.cell
        unique, inverse = np.unique(fine[inside], return_inverse=True)
        for tokens, rows in ((out.image_tokens[i], image_rows), (out.fused[i], fused_rows)):
            selected = tokens[torch.from_numpy(inside)]
            sums = torch.zeros(unique.size, selected.size(1)).index_add_(
                0, torch.from_numpy(inverse), selected
            )
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
    lon, lat = transformer(chip.spec.crs, CRS.from_user_input(WGS84)).transform(xs, ys)
    return np.array(
        [h3.latlng_to_cell(y, x, fine_res) for x, y in zip(lon, lat, strict=True)], dtype=np.int64
    )


def _vectors(values: torch.Tensor | np.ndarray | None, width: int, rows: int) -> pa.FixedSizeListArray:
    """A fixed-width float32 vector column; all null when ``values`` is None."""
    if values is None:
        return pa.nulls(rows, type=pa.list_(pa.float32(), width))
    array = np.ascontiguousarray(np.asarray(values), dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(array.ravel()), width)
