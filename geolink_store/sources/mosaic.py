"""Imagery for cells: open rasters and tile folders as one mosaic and read ImageNet-normalised 224x224 chips.

Example::

    source = open_imagery(["scene.tif", "tiles/"])     # priority order; a folder is a slippy-map tile set
    cells = source.covered_cells(region_cells(region, 12))
    crs = source.chip_crs(*cell_lonlat(cells[:1]))
    chip = source.read(chip_for_cell(cells[0], crs))    # geolink_store.chips.Chip | None
    chip.image.shape, chip.valid_fraction               # (3, 224, 224), 0.97
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import shapely
from pyproj import CRS

from geolink_store.chips import Chip, ChipSpec, local_utm
from geolink_store.constants import IMAGENET_MEAN, IMAGENET_STD
from geolink_store.errors import GeolinkError
from geolink_store.grid import cell_geometries
from geolink_store.sources.dates import acquisition_date
from geolink_store.sources.raster import RasterSource, ResamplingName
from geolink_store.sources.xyz import open_tile_folder

MosaicMode = Literal["fill", "first"]


class ImagerySource:
    """Several raster sources read as one mosaic onto chip grids.

    Args:
        sources: in priority order.
        mosaic: ``"fill"`` fills each chip's invalid pixels from the next sources in turn; ``"first"`` takes
            the whole chip from the first source that holds any valid pixel in it.

    Pickles cheaply (paths and settings only): each worker process reopens the files on first read. Not
    thread-safe (GDAL datasets are not): give each thread its own copy.
    """

    def __init__(self, sources: Sequence[RasterSource], *, mosaic: MosaicMode = "fill") -> None:
        if not sources:
            raise GeolinkError("no imagery given: pass at least one raster file or tile folder")
        if mosaic not in ("fill", "first"):
            raise GeolinkError(f"mosaic mode must be 'fill' or 'first', got {mosaic!r}")
        self.sources = list(sources)
        self.mosaic = mosaic

    @property
    def name(self) -> str:
        """The names of all sources, joined by ``+``."""
        return "+".join(source.name for source in self.sources)

    @cached_property
    def acquired(self) -> dict[str, date | None]:
        """When each source (by name) was acquired, where its file says so."""
        return {source.name: acquisition_date(source.path, source.name) for source in self.sources}

    def chip_acquired(self, chip: Chip) -> date | None:
        """When the imagery of ``chip`` was acquired: that of the first source it was read from."""
        return self.acquired.get(chip.source.split("+")[0])

    @property
    def crs(self) -> CRS:
        """The CRS of the first (highest-priority) source."""
        return self.sources[0].crs

    @cached_property
    def footprint(self) -> shapely.Geometry:
        """Where any source holds data, in EPSG:4326."""
        return shapely.union_all([source.footprint for source in self.sources])

    def chip_crs(self, lon: float, lat: float) -> CRS:
        """The CRS for chips near (lon, lat).

        The first source's CRS if it is projected, else the local UTM zone. A chip in its source's own CRS
        is read as one window without a warp. Web Mercator (slippy-map tiles) qualifies too: it is
        conformal, so a chip square in it is square on the ground and truly north up, and chips and graphs
        are measured in the chip's own frame, where its scale (``1 / cos(lat)``) cancels.
        """
        if self.crs.is_projected:
            return self.crs
        return local_utm(lon, lat)

    def covered_cells(self, cells: Iterable[int]) -> np.ndarray:
        """The cells whose hexagon overlaps the imagery footprint (an ``int64`` array, order kept).

        Raises:
            GeolinkError: no cell overlaps the imagery at all.
        """
        cells = np.asarray(list(cells), dtype=np.int64)
        if not cells.size:
            raise GeolinkError("no cells to read imagery for: the region is empty")
        hexagons = cell_geometries(cells)
        covered = cells[shapely.intersects(hexagons, self.footprint)]
        if not covered.size:
            region = _rounded(shapely.total_bounds(hexagons))
            raise GeolinkError(
                f"the region (lon/lat bounds {region}) misses the imagery {self.name} "
                f"(lon/lat bounds {_rounded(self.footprint.bounds)}) entirely"
            )
        return covered

    def read(self, spec: ChipSpec) -> Chip | None:
        """The chip of ``spec`` from the mosaic, or ``None`` when no source holds a valid pixel in it.

        Raises:
            GeolinkError: a source cannot be read (e.g. a truncated file).
        """
        rgb = np.zeros((3, spec.size, spec.size), dtype=np.float32)
        valid = np.zeros((spec.size, spec.size), dtype=bool)
        used = []
        for source in self.sources:
            found = source.read(spec)
            if found is None:
                continue
            source_rgb, source_valid = found
            new = source_valid & ~valid
            np.copyto(rgb, source_rgb, where=new)
            valid |= new
            used.append(source.name)
            if self.mosaic == "first" or valid.all():
                break
        if not used:
            return None
        rgb -= IMAGENET_MEAN[:, None, None]
        rgb /= IMAGENET_STD[:, None, None]
        rgb[:, ~valid] = 0.0
        return Chip(spec=spec, image=rgb, valid=valid, source="+".join(used))


def open_imagery(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    bands: Sequence[int] | None = None,
    value_range: tuple[float, float] | None = None,
    resampling: ResamplingName = "auto",
    mosaic: MosaicMode = "fill",
) -> ImagerySource:
    """Open raster files and slippy-map tile folders (in priority order) as one :class:`ImagerySource`.

    ``bands``, ``value_range`` and ``resampling`` apply to every source (see :class:`RasterSource`); build
    ``ImagerySource([RasterSource(...), ...])`` yourself for per-source settings.

    Raises:
        GeolinkError: a path is missing, unreadable, has no CRS, or a folder holds no tiles.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    options = {"bands": bands, "value_range": value_range, "resampling": resampling}
    sources = []
    for path in map(Path, paths):
        if path.is_dir():
            sources.append(open_tile_folder(path, **options))
        elif path.is_file():
            sources.append(RasterSource(path, **options))
        else:
            raise GeolinkError(f"imagery path {path} does not exist")
    return ImagerySource(sources, mosaic=mosaic)


def _rounded(bounds: Sequence[float]) -> str:
    return "(" + ", ".join(f"{value:.5f}" for value in bounds) + ")"
