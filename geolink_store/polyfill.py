"""Polygons to H3 cells down the hierarchy: whole coarse cells decided at once, only the edge refined.

H3's own polygon fill tests every candidate cell against every polygon edge, which grows with the vertex
count of an irregular boundary (and its ``overlap`` mode is slower still). Here a coarse cell whose every
descendant is certainly inside (or outside) the polygon is decided in one prepared GEOS predicate; only the
cells along the boundary are split into their children, level by level, and tested at ``res`` itself:
``center`` keeps the cells whose centre lies inside, ``overlap`` those whose hexagon touches the polygon, the
same rules as ``h3shape_to_cells_experimental``. Memory follows the boundary, not the area, until the
answer is written out.

A cell's descendants stay within its own hexagon scaled about its centre by :data:`DESCENDANT_SCALE` (their
centres stick out of it by at most ~0.12 of its edge, their hexagons by ~0.2: scales 1.14 and 1.23); scaling,
unlike a buffer in degrees, follows the hexagon's own stretch in longitude.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import shapely
from h3.api import basic_int as h3
from h3ronpy import change_resolution
from h3ronpy.vector import cells_to_coordinates, cells_to_wkb_polygons

DESCENDANT_SCALE = {"center": 1.3, "overlap": 1.4}
"""Per rule, the scale of a cell's hexagon about its centre that holds all its descendants' centres (or
hexagons), with a margin over the measured 1.14 (1.23)."""
RADIUS_MARGIN = 1.05
"""Growth of a cell's measured circumradius, for the cells of the polygon that were not measured."""
MAX_SPAN_DEG = 10.0
"""Polygons taller than this (where cos(latitude) varies too much for one frame) use H3's own fill."""
LEVELS = 4
"""How many resolutions above ``res`` the descent starts."""
MAX_ABS_LAT = 80.0
"""Beyond this latitude (and within a degree of the antimeridian) H3's own fill is used instead."""

Contain = Literal["center", "overlap"]


def polygon_to_cells(geometry: shapely.Geometry, res: int, contain: Contain = "center") -> np.ndarray:
    """The cells at ``res`` of a (multi)polygon in lon/lat degrees, as an unsorted ``int64`` array.

    The same cells as ``h3.h3shape_to_cells_experimental(h3.geo_to_h3shape(geometry), res, contain)``.
    """
    west, south, east, north = geometry.bounds
    polar = max(abs(south), abs(north)) > MAX_ABS_LAT or north - south > MAX_SPAN_DEG
    if polar or west < -179.0 or east > 179.0 or res < LEVELS:
        shape = h3.geo_to_h3shape(geometry)
        return np.asarray(h3.h3shape_to_cells_experimental(shape, res, contain=contain), dtype=np.int64)
    frame = _Frame(geometry)
    level = res - LEVELS
    cells = _bbox_cells(geometry.bounds, level)
    found: list[np.ndarray] = []
    while level < res:
        centres = _centres(cells)
        inside = frame.inside(centres)
        near = frame.near(centres, DESCENDANT_SCALE[contain] * frame.radius(level))
        found.append(_children(cells[inside & ~near], res))
        level += 1
        cells = np.unique(_children(cells[near], level))
    centres = _centres(cells)
    keep = frame.inside(centres)
    if contain == "overlap":  # centre outside: the hexagon may still reach over the boundary
        maybe = ~keep & frame.near(centres, RADIUS_MARGIN * frame.radius(res))
        keep[maybe] = shapely.intersects(frame.geometry, _hexagons(cells[maybe]))
    found.append(cells[keep])
    return np.concatenate(found)


class _Frame:
    """The polygon in a local frame where H3 cells are round: x = longitude * cos(mid latitude), y = latitude.

    Distances in it are degrees of latitude, to within the cos ratio across the polygon's latitudes (which
    :meth:`radius` measures on sample cells at the polygon's extremes).
    """

    def __init__(self, geometry: shapely.Geometry) -> None:
        west, south, east, north = geometry.bounds
        self.geometry, self.bounds = geometry, geometry.bounds
        shapely.prepare(geometry)
        self.stretch = np.cos(np.radians((south + north) / 2))
        self.polygon = shapely.transform(geometry, lambda xy: xy * [self.stretch, 1.0])
        self.edges = shapely.boundary(self.polygon)
        shapely.prepare(self.polygon)
        shapely.prepare(self.edges)

    def inside(self, centres: np.ndarray) -> np.ndarray:
        """Which ``(N, 2)`` lat, lon points lie inside the polygon."""
        return shapely.contains_xy(self.polygon, centres[:, 1] * self.stretch, centres[:, 0])

    def near(self, centres: np.ndarray, distance: float) -> np.ndarray:
        """Which points lie within ``distance`` (frame degrees) of the polygon's boundary."""
        points = shapely.points(centres[:, 1] * self.stretch, centres[:, 0])
        return shapely.dwithin(self.edges, points, distance)

    def radius(self, res: int) -> float:
        """The largest distance in this frame from a cell's centre to its corners, at ``res``.

        Measured on the cells at the polygon's corners and centre, grown by :data:`RADIUS_MARGIN`.
        """
        west, south, east, north = self.bounds
        lats = [south, south, north, north, (south + north) / 2]
        lons = [west, east, west, east, (west + east) / 2]
        cells = np.array([h3.latlng_to_cell(lat, lon, res) for lat, lon in zip(lats, lons, strict=True)])
        largest = 0.0
        for cell, centre in zip(cells, _centres(cells), strict=True):
            offsets = (np.array(h3.cell_to_boundary(int(cell))) - centre) * [1.0, self.stretch]
            largest = max(largest, float(np.sqrt((offsets**2).sum(axis=1)).max()))
        return largest * RADIUS_MARGIN


def _bbox_cells(bounds: tuple[float, float, float, float], level: int) -> np.ndarray:
    """Cells at ``level`` that may have a descendant in the box: those touching it grown by two edges."""
    west, south, east, north = bounds
    edge_deg = h3.average_hexagon_edge_length(level, unit="km") / 111.32
    grow_x = 2 * edge_deg / np.cos(np.radians(max(abs(south), abs(north)) + 2 * edge_deg))
    box = shapely.box(west - grow_x, south - 2 * edge_deg, east + grow_x, north + 2 * edge_deg)
    found = h3.h3shape_to_cells_experimental(h3.geo_to_h3shape(box), level, contain="overlap")
    return np.asarray(found, dtype=np.int64)


def _children(cells: np.ndarray, res: int) -> np.ndarray:
    """All children at ``res`` of the cells, concatenated (grouped by parent)."""
    return _ids(change_resolution(_arrow(cells), res))


def _centres(cells: np.ndarray) -> np.ndarray:
    """``(N, 2)`` lat, lon of the cells' centres."""
    centres = pa.record_batch(cells_to_coordinates(_arrow(cells)))
    return np.column_stack([centres["lat"].to_numpy(), centres["lng"].to_numpy()])


def _hexagons(cells: np.ndarray) -> np.ndarray:
    """The cells' boundaries as shapely polygons in lon/lat."""
    return shapely.from_wkb(pa.array(cells_to_wkb_polygons(_arrow(cells))).to_numpy(zero_copy_only=False))


def _arrow(cells: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(cells, dtype=np.int64).view(np.uint64))


def _ids(cells: pa.Array) -> np.ndarray:
    return np.asarray(cells).view(np.int64)
