"""The work of one partition, shared by every engine.

The CPU side (:func:`partition_work`): the partition's OSM read once, its chips read, their graphs built. The
model side (:func:`encode_batch`): a batch encoded; then :func:`batch_rows` shapes its outputs into store rows
(:func:`encode_work` does both).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import torch
from h3.api import basic_int as h3
from pyproj import CRS
from torch_geometric.data import HeteroData

from geolink_store.chips import Chip, ChipTally, chip_for_cell, read_chips, transformer
from geolink_store.constants import WGS84
from geolink_store.graphs.builder import GraphBuilder
from geolink_store.grid import parents
from geolink_store.pipeline.plan import IngestReport, IngestSettings, Partition, partition_osm, vector_widths
from geolink_store.sources.mosaic import ImagerySource
from geolink_store.sources.osm import OSMIndex
from geolink_store.store.rows import cell_rows, patch_rows
from model import NODE_TYPES, GeoLink


@dataclass
class ImageBatch:
    """Chips of cells with imagery, the OSM graph of each chip, and when each chip's imagery was taken."""

    chips: list[Chip]
    graphs: list[HeteroData]
    acquired: list[date | None]


@dataclass
class OsmOnlyBatch:
    """Cells without (enough) imagery whose chip footprint holds OSM, with their graphs."""

    cells: np.ndarray
    graphs: list[HeteroData]


Work = ImageBatch | OsmOnlyBatch


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
    osm: str | None,
    partition: Partition,
    chip_crs: CRS,
    builder: GraphBuilder,
    settings: IngestSettings,
    tally: ChipTally,
) -> Iterator[Work]:
    """The CPU side of one partition, batch by batch: its OSM read once, chips read, graphs built.

    The chips of the cells the imagery covers come first; with ``settings.osm_only`` the partition's other
    cells follow as :class:`OsmOnlyBatch` es. Skipped cells are counted in ``tally``. Without ``osm`` every
    graph is empty (image-only cells).
    """
    index = OSMIndex(partition_osm(osm, partition.cells), chip_crs)
    read: list[int] = []
    for batch in _batched(
        read_chips(source, partition.imaged, chip_crs, min_valid=settings.min_valid, tally=tally),
        settings.batch_size,
    ):
        read += [chip.cell for chip in batch]
        yield ImageBatch(
            batch,
            builder.build_many([(index.query(chip.spec.bounds), chip.spec) for chip in batch]),
            [source.chip_acquired(chip) for chip in batch],
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


@dataclass
class EncodedBatch:
    """A batch's model outputs on the CPU, before they are shaped into rows.

    ``image``, ``fused`` and ``image_tokens`` are None for an :class:`OsmOnlyBatch`.
    """

    work: Work
    osm: np.ndarray
    has_osm: np.ndarray
    image: np.ndarray | None = None
    image_tokens: torch.Tensor | None = None
    fused: torch.Tensor | None = None


@torch.no_grad()
def encode_batch(model: GeoLink, work: Work, settings: IngestSettings, dtype: torch.dtype) -> EncodedBatch:
    """The model side of one batch: its outputs, moved to the CPU."""
    if isinstance(work, OsmOnlyBatch):
        region, present = model.encode_osm(work.graphs)
        return EncodedBatch(work, region.cpu().numpy(), present.cpu().numpy())
    device = next(model.parameters()).device
    images = torch.from_numpy(np.stack([chip.image for chip in work.chips])).to(device)
    out = model.encode(images, work.graphs, max_fusion_nodes=settings.max_fusion_nodes, dtype=dtype)
    return EncodedBatch(
        work,
        osm=out.osm_region.cpu().numpy(),
        has_osm=out.has_osm.cpu().numpy(),
        image=out.image_global.cpu().numpy(),
        image_tokens=out.image_tokens.cpu(),
        fused=out.fused.cpu(),
    )


def batch_rows(
    batch: EncodedBatch, settings: IngestSettings, model_id: str, widths: dict[str, int]
) -> EncodedRows:
    """A batch's store rows from its model outputs (CPU work only: it may run beside the next encode)."""
    work = batch.work
    if isinstance(work, OsmOnlyBatch):
        cells = cell_rows(
            work.cells,
            res=settings.res,
            model_id=model_id,
            epoch=settings.epoch,
            sources=["osm-only"] * work.cells.size,
            acquired=[None] * work.cells.size,
            widths=widths,
            image=None,
            osm=batch.osm,
            has_osm=batch.has_osm,
            fused=None,
            node_counts=_node_counts(work.graphs),
            vectors=settings.vectors,
        )
        return EncodedRows(None, cells, with_osm=int(batch.has_osm.sum()), osm_only=True)
    cells = cell_rows(
        np.array([chip.cell for chip in work.chips], dtype=np.int64),
        res=settings.res,
        model_id=model_id,
        epoch=settings.epoch,
        sources=[chip.source for chip in work.chips],
        acquired=work.acquired,
        widths=widths,
        image=batch.image,
        osm=batch.osm,
        has_osm=batch.has_osm,
        fused=batch.fused.mean(dim=1).numpy(),
        node_counts=_node_counts(work.graphs),
        vectors=settings.vectors,
    )
    return EncodedRows(
        _patches(work.chips, batch.image_tokens, batch.fused, settings, model_id),
        cells,
        with_osm=int(batch.has_osm.sum()),
        osm_only=False,
    )


def encode_work(
    model: GeoLink, work: Work, settings: IngestSettings, model_id: str, dtype: torch.dtype
) -> EncodedRows:
    """One batch encoded and shaped into store rows."""
    return batch_rows(encode_batch(model, work, settings, dtype), settings, model_id, vector_widths(model))


def _node_counts(graphs: list[HeteroData]) -> dict[str, np.ndarray]:
    """The OSM nodes of each kind in each graph, keyed by ``cells`` column."""
    return {f"n_{t}": np.array([g[t].num_nodes for g in graphs], dtype=np.int32) for t in NODE_TYPES}


def _patches(
    chips: list[Chip], image: torch.Tensor, fused: torch.Tensor, settings: IngestSettings, model_id: str
) -> pa.Table:
    """``patches`` rows: image and fused patch tokens (B, P, D) averaged per fine cell.

    Only the fine cells inside each chip's own hexagon are kept (a chip's square overlaps its neighbours).
    """
    rows_h3, rows_parent, image_rows, fused_rows = [], [], [], []
    for i, chip in enumerate(chips):
        fine = _patch_cells(chip, settings.patch_res, image.shape[1])
        inside = parents(fine, settings.res) == chip.cell
        unique, inverse = np.unique(fine[inside], return_inverse=True)
        for tokens, rows in ((image[i], image_rows), (fused[i], fused_rows)):
            selected = tokens[torch.from_numpy(inside)]
            sums = torch.zeros(unique.size, selected.size(1)).index_add_(
                0, torch.from_numpy(inverse), selected
            )
            counts = torch.bincount(torch.from_numpy(inverse), minlength=unique.size).unsqueeze(1)
            rows.append((sums / counts).numpy())
        rows_h3.append(unique)
        rows_parent.append(np.full(unique.size, chip.cell, dtype=np.int64))
    return patch_rows(
        np.concatenate(rows_h3),
        np.concatenate(rows_parent),
        res=settings.patch_res,
        model_id=model_id,
        epoch=settings.epoch,
        image=np.concatenate(image_rows),
        fused=np.concatenate(fused_rows),
    )


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


def _batched(chips: Iterator[Chip], size: int) -> Iterator[list[Chip]]:
    batch: list[Chip] = []
    for chip in chips:
        batch.append(chip)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
