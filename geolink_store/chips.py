"""The chip grid of an H3 cell.

A square, north-up pixel grid in a metric CRS, and the chip frame of its contents.

Pixels and OSM geometry share one frame: ``x = (X - west) / width`` to the right and ``y = (north - Y) /
height`` downwards, both in [0, 1] over the chip. Imagery is resampled onto ``ChipSpec.transform``; geometry
goes through ``ChipSpec.to_chip_frame``; a building therefore lands on its own pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Protocol

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.transform import from_bounds

from geolink_store.constants import CHIP_SIZE, IMAGENET_MEAN, IMAGENET_STD, WGS84
from geolink_store.grid import cell_boundary_lonlat, cell_lonlat


def local_utm(lon: float, lat: float) -> CRS:
    """The UTM zone (WGS 84) that contains a lon/lat point."""
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


@lru_cache(maxsize=64)
def transformer(source: CRS, target: CRS) -> Transformer:
    """A cached ``always_xy`` transformer: building one costs milliseconds, using it microseconds."""
    return Transformer.from_crs(source, target, always_xy=True)


@dataclass(frozen=True)
class ChipSpec:
    """A square chip of ``size`` x ``size`` pixels in ``crs``.

    It covers ``bounds`` (west, south, east, north) in ``crs``.
    """

    cell: int
    crs: CRS
    bounds: tuple[float, float, float, float]
    size: int = CHIP_SIZE

    @cached_property
    def transform(self) -> Affine:
        """The affine pixel -> ``crs`` transform of the chip grid (north up)."""
        return from_bounds(*self.bounds, self.size, self.size)

    @property
    def pixel_size(self) -> float:
        """Ground size of one pixel, in ``crs`` units."""
        return (self.bounds[2] - self.bounds[0]) / self.size

    @cached_property
    def footprint(self) -> shapely.Polygon:
        """The chip's square in ``crs``."""
        return shapely.box(*self.bounds)

    def footprint_in(self, crs: CRS | str) -> shapely.Polygon:
        """The chip's square in another CRS, densified so that its edges follow the reprojection."""
        square = shapely.segmentize(self.footprint, (self.bounds[2] - self.bounds[0]) / 16)
        to_other = transformer(self.crs, CRS.from_user_input(crs))
        return shapely.transform(square, lambda xy: np.column_stack(to_other.transform(xy[:, 0], xy[:, 1])))

    def to_chip_frame(self, geometries: np.ndarray | shapely.Geometry) -> np.ndarray | shapely.Geometry:
        """Map geometries given in ``crs`` into the chip frame: x right, y down, [0, 1] over the chip."""
        return to_chip_frame(geometries, self.bounds)


def to_chip_frame(
    geometries: np.ndarray | shapely.Geometry, bounds: tuple[float, float, float, float]
) -> np.ndarray | shapely.Geometry:
    """Map geometries into the frame of the chip covering ``bounds`` (west, south, east, north, same CRS).

    The frame is x right and y down, [0, 1] over the chip: the one mapping that pixels and OSM share.
    """
    west, south, east, north = bounds
    scale = np.array([1.0 / (east - west), -1.0 / (north - south)])
    origin = np.array([west, north])
    return shapely.transform(geometries, lambda xy: (xy - origin) * scale)


def chip_for_cell(cell: int, crs: CRS, size: int = CHIP_SIZE) -> ChipSpec:
    """The square chip centred on ``cell``'s centre in ``crs``, just large enough to contain its hexagon."""
    to_crs = transformer(CRS.from_user_input(WGS84), crs)
    corners = cell_boundary_lonlat(cell)
    xs, ys = to_crs.transform(corners[:, 0], corners[:, 1])
    (lon,), (lat,) = cell_lonlat([cell])
    cx, cy = to_crs.transform(lon, lat)
    half = max(np.max(np.abs(xs - cx)), np.max(np.abs(ys - cy)))
    return ChipSpec(cell=cell, crs=crs, bounds=(cx - half, cy - half, cx + half, cy + half), size=size)


@dataclass(frozen=True)
class Chip:
    """The imagery of one cell on its chip grid.

    Attributes:
        spec: the chip grid (cell, CRS, bounds, size).
        image: float32 ``(3, size, size)``, RGB normalised with the ImageNet mean and std; invalid pixels
            are 0 (the mean colour).
        valid: bool ``(size, size)``, where some source held data.
        source: the names of the sources that filled the chip, joined by ``+``.
    """

    spec: ChipSpec
    image: np.ndarray
    valid: np.ndarray
    source: str

    @property
    def cell(self) -> int:
        """The chip's H3 cell (int64 form)."""
        return self.spec.cell

    @property
    def valid_fraction(self) -> float:
        """Share of the chip's pixels that hold imagery, in [0, 1]."""
        return float(self.valid.mean())

    def rgb(self) -> np.ndarray:
        """The chip as a displayable uint8 ``(size, size, 3)`` image (normalisation undone)."""
        rgb = self.image * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]
        return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8).transpose(1, 2, 0)


@dataclass
class ChipTally:
    """Counts of what :func:`read_chips` did with each cell."""

    read: int = 0
    no_imagery: int = 0
    too_sparse: int = 0
    skipped_cells: list[int] = field(default_factory=list)


class ChipReader(Protocol):
    """Anything that reads the chip of a :class:`ChipSpec`.

    For example ``geolink_store.sources.mosaic.ImagerySource``.
    """

    def read(self, spec: ChipSpec) -> Chip | None:
        """The chip's imagery, or None where the source holds none."""


def read_chips(
    source: ChipReader,
    cells: Iterable[int],
    crs: CRS,
    *,
    min_valid: float = 0.0,
    tally: ChipTally | None = None,
) -> Iterator[Chip]:
    """Read the chip of each cell in ``crs``, skipping cells without imagery or too sparse.

    A cell is too sparse where its chip's ``valid_fraction`` is below ``min_valid``; pass a
    :class:`ChipTally` to count (and list) the skipped cells.
    """
    tally = tally if tally is not None else ChipTally()
    for cell in cells:
        chip = source.read(chip_for_cell(int(cell), crs))
        if chip is None or chip.valid_fraction < min_valid:
            if chip is None:
                tally.no_imagery += 1
            else:
                tally.too_sparse += 1
            tally.skipped_cells.append(int(cell))
            continue
        tally.read += 1
        yield chip
