"""Planning an ingest: inputs checked and the cells to encode decided before anything is written.

:func:`plan_ingest` checks the paths and the region (:mod:`geolink_store.preflight`), opens the imagery,
makes sure the OSM holds features in the region and that the store's resolutions match, and only then loads
the model, checks it against the store and leaves out the cells the store already holds for it; every engine
carries out the same :class:`IngestPlan`, partition by partition (cells grouped by a coarse H3 parent, each
reading only its own OSM: :func:`partition_osm`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import shapely
import torch
from pyproj import CRS

from geolink_store.chips import ChipTally
from geolink_store.constants import CELLS, DEFAULT_EPOCH, IMAGERY, MAX_RES, PATCHES, WGS84
from geolink_store.errors import EmptySourceError, InputError, StoreError
from geolink_store.graphs.builder import GraphBuilder
from geolink_store.graphs.text import encoder_name
from geolink_store.grid import cell_geometries, cell_lonlat, parents, region_cells
from geolink_store.preflight import check_ingest_inputs
from geolink_store.regions import CheckedRegion, cell_size_deg
from geolink_store.sources.mosaic import ImagerySource, open_imagery
from geolink_store.sources.osm import read_osm
from geolink_store.store import Store, cells_schema, parent_column, patches_schema
from geolink_store.store.epochs import checked_label
from geolink_store.store.locations import is_remote
from geolink_store.store.quantize import VectorLayout, checked_layout, layout_of
from geolink_store.store.rows import imagery_rows
from geolink_store.store.schema import VECTOR_COLUMNS
from model import GeoLink, fingerprint

Progress = Callable[[int], None]
"""Receives the number of cells finished as work completes."""
ModelSource = GeoLink | Callable[[], GeoLink] | None
"""A model, a function that loads one (called once the inputs passed their checks), or None: the default."""


@dataclass(frozen=True)
class IngestSettings:
    """How to encode a region.

    Attributes:
        res: H3 resolution of the cells (one chip each).
        fine_res: resolution of the fine-grained patch cells (default ``res + 2``).
        batch_size: cells per model batch (the local engine commits many batches at once).
        min_valid: cells whose chip holds less than this share of valid imagery are skipped and counted.
        max_fusion_nodes: optional deterministic cap on OSM nodes per chip in the fusion block.
        bf16: run the model under bfloat16 autocast (default: on a GPU only).
        overwrite: re-encode cells that the store already holds for this model (default: resume, skip them).
        osm_only: cells without (enough) imagery but with OSM get a row with their ``osm`` vector alone
            (``image`` and ``fused`` null) instead of being skipped.
        partition_levels: cells are processed in partitions of their parent this many resolutions coarser (3:
            about 343 cells each); a partition reads its OSM once and is the unit of work of the Ray engine.
        allow_empty_osm: encode even when the OSM source holds no usable feature in the region (by default
            that is refused: it is most often OSM of another place or in another CRS).
        epoch: the label of the rows written (``2010``, ``2020-06``, ...; see
            :mod:`geolink_store.store.epochs`): the same cells ingested under two epochs are two rows each.
        vectors: how ``cells`` stores its vectors: ``float32``, ``int8`` (int8 codes and a float32 scale per
            vector, a quarter of the bytes) or ``both`` (:func:`~geolink_store.store.schema.vector_fields`);
            fixed when the table is created. ``patches`` stay float32.
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
    allow_empty_osm: bool = False
    epoch: str = DEFAULT_EPOCH
    vectors: VectorLayout = "float32"

    @property
    def patch_res(self) -> int:
        """The resolution of the ``patches`` rows."""
        return self.res + 2 if self.fine_res is None else self.fine_res

    def dtype(self, device: torch.device) -> torch.dtype:
        """The autocast dtype of the model: bfloat16 when asked, or by default on a GPU; float32 otherwise."""
        bf16 = self.bf16 if self.bf16 is not None else device.type == "cuda"
        return torch.bfloat16 if bf16 else torch.float32


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
        """Cells encoded per second of the whole run."""
        return self.cells_encoded / self.seconds if self.seconds else 0.0

    def add_tally(self, tally: ChipTally) -> None:
        """Count the cells that chip reading skipped."""
        self.cells_too_sparse += tally.too_sparse
        self.cells_without_imagery += tally.no_imagery
        self.skipped_cells += tally.skipped_cells


@dataclass(frozen=True)
class Partition:
    """The unit of work: the cells to encode under one coarse H3 parent.

    Attributes:
        parent: the coarse parent cell.
        cells: the cells to encode.
        imaged: those of ``cells`` that the imagery covers.
    """

    parent: int
    cells: np.ndarray
    imaged: np.ndarray


@dataclass
class IngestPlan:
    """A checked ingest: what to encode and with what, decided before anything is written.

    Every engine (local, Ray) starts from the same plan, so they refuse the same bad input with the same
    message and encode exactly the same cells.
    """

    store: Store
    model: GeoLink
    model_name: str
    settings: IngestSettings
    imagery: list[str]
    source: ImagerySource
    osm: str | None
    covered: np.ndarray
    chip_crs: CRS
    builder: GraphBuilder
    todo: np.ndarray
    dtype: torch.dtype
    report: IngestReport
    model_registered: bool = False

    def partitions(self) -> Iterator[Partition]:
        """The cells to encode, grouped by their coarse parent (:attr:`IngestSettings.partition_levels`)."""
        return partition_cells(
            self.todo, np.isin(self.todo, self.covered), self.settings.res, self.settings.partition_levels
        )

    def register_model(self) -> None:
        """Record the model in the store's ``models`` table (a no-op once it is there)."""
        if self.model_registered:
            return
        self.store.register_model(
            self.report.model_id,
            name=self.model_name,
            architecture=self.model.config.architecture,
            config=json.loads(self.model.config.to_json()),
            text_encoder=encoder_name(self.builder.cache.encoder),
        )
        self.model_registered = True

    def record_imagery(self) -> None:
        """Record where each imagery source of this epoch is, in the ``imagery`` table (once cells exist)."""
        if CELLS not in self.store.table_names():
            return
        names = [source.name for source in self.source.sources]
        self.store.upsert(
            IMAGERY,
            imagery_rows(
                names,
                [str(Path(path).resolve()) for path in self.imagery],
                [source.footprint.bounds for source in self.source.sources],
                [self.source.acquired[name] for name in names],
                epoch=self.settings.epoch,
            ),
        )

    def schemas(self) -> dict[str, pa.Schema]:
        """The ``cells`` and ``patches`` schemas of this model's rows."""
        widths = vector_widths(self.model)
        return {
            CELLS: cells_schema(
                widths["image"], widths["osm"], widths["fused"], self.settings.res, self.settings.vectors
            ),
            PATCHES: patches_schema(self.model.embed_dim, widths["fused"]),
        }


def plan_ingest(
    db: str,
    region: object,
    imagery: list[str],
    osm: str | None,
    *,
    model: ModelSource = None,
    model_name: str = "default",
    settings: IngestSettings | None = None,
    graph_builder: GraphBuilder | None = None,
) -> IngestPlan:
    """Check the inputs and decide which cells to encode; writes nothing (a new store is only created).

    The data checks run before ``model`` is loaded (when it is a loader), the model checks after. Without
    ``osm`` (None) every cell is encoded from its imagery alone (its ``osm`` vector null).

    Raises:
        InputError: bad settings, paths or region; OSM without a usable feature in the region (unless
            ``settings.allow_empty_osm``); an image-only model, a text encoder of another width, a graph
            builder without the geometry features the model reads.
        StoreError: the store cannot be written to, or holds cells or patches of other resolutions or vectors
            of other widths than this ingest's.
    """
    settings = settings or IngestSettings()
    checked_label(settings.epoch)
    checked_layout(settings.vectors)
    if osm is None and settings.osm_only:
        raise InputError("osm_only= encodes cells from their OSM alone: it needs osm=...")
    checked = check_ingest_inputs(db, region, imagery, osm, settings.res, settings.patch_res)
    source = open_imagery(imagery)
    cells = region_cells(checked.region, settings.res)
    covered = source.covered_cells(cells)
    if osm is not None and not settings.allow_empty_osm:
        _require_osm(osm, checked, settings.res)
    existing = Store.create_or_open(db) if is_remote(db) or Path(db).is_dir() else None
    if existing is not None:
        _check_store_resolutions(existing, settings)
        _check_store_layout(existing, settings.vectors)
    model = _loaded(model)
    if not model.config.multimodal:
        raise InputError("ingest needs a multimodal GeoLink checkpoint (this one is image-only)")
    report = IngestReport(
        model_id=fingerprint(model.config, model.state_dict()),
        cells_in_region=int(cells.size),
        cells_without_imagery=int(cells.size - covered.size),
    )
    chip_crs = source.chip_crs(*(float(v[0]) for v in cell_lonlat(covered[:1])))
    builder = graph_builder or GraphBuilder(geometry=model.config.node_geometry)
    if model.config.node_geometry and not builder.geometry:
        raise InputError(
            "the model reads node geometry features (config.node_geometry=True) but the graph builder does "
            "not make them: pass GraphBuilder(geometry=True)"
        )
    if builder.text_dim != model.config.osm_in_chans:
        raise InputError(
            f"the tag text encoder gives {builder.text_dim}-d features but the model expects "
            f"{model.config.osm_in_chans}-d: use the model's text encoder"
        )
    store = existing or Store.create_or_open(db)
    _check_store_widths(store, model)
    wanted = cells if settings.osm_only else covered
    stored = store.existing_cells(report.model_id, epoch=settings.epoch)
    todo = wanted if settings.overwrite else np.setdiff1d(wanted, stored)
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
        dtype=settings.dtype(next(model.parameters()).device),
        report=report,
    )


def _loaded(model: ModelSource) -> GeoLink:
    """The model to encode with, in eval mode: given, loaded, or the bundled default."""
    if model is None:
        model = GeoLink.default()
    elif not isinstance(model, GeoLink):
        model = model()
    return model.eval()


def _require_osm(osm: str, checked: CheckedRegion, res: int) -> None:
    """Refuse OSM without a usable feature where the region's chips lie (a cell around the region).

    That is most often OSM of another place or in another CRS, which would silently give no OSM anywhere.
    """
    west, south, east, north = checked.geometry.bounds
    pad = cell_size_deg(res, max(abs(south), abs(north)))
    bounds = max(-180.0, west - pad), max(-90.0, south - pad), min(180.0, east + pad), min(90.0, north + pad)
    try:
        read_osm(osm, bounds)
    except EmptySourceError as error:
        raise EmptySourceError(f"{error}; to encode without OSM, pass allow_empty_osm=") from None


def _check_store_resolutions(store: Store, settings: IngestSettings) -> None:
    """Refuse cells or patches of other resolutions than the store's (before anything is written)."""
    tables = store.table_names()
    if CELLS in tables:
        names = set(store.table(CELLS).schema.names)
        stored = sum(parent_column(k) in names for k in range(MAX_RES + 1))
        if stored != settings.res:
            raise StoreError(
                f"the store's cells are at H3 resolution {stored} but this ingest asks for "
                f"res={settings.res}: use res={stored}, or another db=... for this resolution"
            )
    if PATCHES in tables:
        found = store.table(PATCHES).search().select(["res"]).limit(1).to_arrow()["res"].to_pylist()
        if found and found[0] != settings.patch_res:
            raise StoreError(
                f"the store's patches are at H3 resolution {found[0]} but this ingest asks for "
                f"fine_res={settings.patch_res}: use fine_res={found[0]}, or another db=..."
            )


def _check_store_layout(store: Store, vectors: VectorLayout) -> None:
    """Refuse vectors in another layout than the store's ``cells`` (before anything is written)."""
    if CELLS not in store.table_names():
        return
    stored = layout_of(store.table(CELLS).schema, VECTOR_COLUMNS[CELLS])
    if stored != vectors:
        raise StoreError(
            f"the store's cells hold {stored} vectors but this ingest asks for vectors={vectors}: "
            f"use vectors={stored}, or another db=... for this layout"
        )


def vector_widths(model: GeoLink) -> dict[str, int]:
    """The width of each ``cells`` vector column for ``model``.

    ``image`` is the global image vector, for a CNN backbone wider than the image tokens (``patches.image``).
    """
    return {"image": model.global_dim, "osm": model.config.region_dim, "fused": model.config.fusion_dim}


def _check_store_widths(store: Store, model: GeoLink) -> None:
    """Refuse a model whose vector widths differ from the store's (before anything is written)."""
    if CELLS not in store.table_names():
        return
    for column, width in vector_widths(model).items():
        stored = store.vector_width(CELLS, column)
        if stored != width:
            raise StoreError(
                f"the store's {column} vectors are {stored}-d but this model gives {width}-d: "
                "use another db=... for this model"
            )


def partition_cells(cells: np.ndarray, imaged: np.ndarray, res: int, levels: int) -> Iterator[Partition]:
    """The cells grouped by their parent ``levels`` resolutions coarser, in a stable order.

    ``imaged`` is a mask over ``cells`` of those the imagery covers.
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


def partition_osm(path: str | None, cells: np.ndarray) -> gpd.GeoDataFrame:
    """The OSM entities around a partition's chips: its hexagons' bounds grown by a cell on each side.

    None of them without ``path`` (an image-only ingest).
    """
    if path is None:
        return gpd.GeoDataFrame({"tags": []}, geometry=gpd.GeoSeries([], crs=WGS84))
    west, south, east, north = shapely.total_bounds(cell_geometries(cells))
    pad = max(east - west, north - south) / max(1.0, np.sqrt(cells.size))
    return read_osm(path, (west - pad, south - pad, east + pad, north + pad), allow_empty=True)
