"""Every region form checked the same way before anything is read or listed: validity and size in H3 cells.

Regions come as ``--region`` (a bbox, a vector file, a geometry or H3 cells) and as polygons inside label
files. :func:`checked_region` refuses a region that would hold more than
:data:`~geolink_store.grid.MAX_REGION_CELLS` cells at the resolution asked for, from its equal-area size
alone (so a continent or a res-0 cell at res 12 fails at once, not with a MemoryError), and returns it in a
form :func:`~geolink_store.grid.region_cells` covers correctly: a bbox with W > E (RFC 7946) or a polygon
with an edge across the antimeridian is cut there into parts that each lie within -180..180 degrees.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np
import shapely

from geolink_store import grid
from geolink_store.errors import GeolinkError, InputError

EARTH_AREA_KM2 = 510_065_621.7
"""The area of the WGS84 ellipsoid."""
KM_PER_DEGREE = 111.32
"""Kilometres per degree of latitude (and of longitude at the equator)."""


@dataclass(frozen=True)
class CheckedRegion:
    """A region that passed :func:`checked_region`.

    Attributes:
        region: what :func:`~geolink_store.grid.region_cells` covers: the H3 cells as given, or the geometry.
        geometry: the region in lon/lat degrees, cut at the antimeridian.
    """

    region: grid.Region
    geometry: shapely.Geometry


def checked_region(region: grid.Region, res: int, what: str = "the region") -> CheckedRegion:
    """Validate a region of any form and refuse it when it holds too many cells at ``res``.

    Raises:
        GeolinkError: bad resolution; a region that is none of the forms, holds no area, or names an H3 id
            that is not one (ids beyond 64 bits included); more cells than the limit.
    """
    res = grid.check_resolution(res)
    bbox = _bbox(region) if isinstance(region, str) else None
    cells = None if bbox is not None else _cell_list(region)
    if bbox is not None and bbox[0] > bbox[2]:
        geometry = _wrapping_box(bbox)
    else:
        geometry = grid.region_geometry(region if cells is None else cells)
    geometry = split_at_antimeridian(geometry)
    grid.check_cell_count(grid.estimated_cells(geometry, res), res, what)
    return CheckedRegion(region=geometry if cells is None else cells, geometry=geometry)


def cell_area_km2(res: int) -> float:
    """The mean area of an H3 cell at ``res`` (the Earth shared by its ``2 + 120 * 7**res`` cells)."""
    return EARTH_AREA_KM2 / (2 + 120 * 7**res)


def cell_size_deg(res: int, lat: float = 0.0) -> float:
    """About the width of an H3 cell at ``res`` in degrees of longitude at latitude ``lat``."""
    return math.sqrt(cell_area_km2(res)) / KM_PER_DEGREE / max(math.cos(math.radians(lat)), 0.01)


def split_at_antimeridian(geometry: shapely.Geometry) -> shapely.Geometry:
    """``geometry`` with every polygon that crosses the antimeridian cut there into parts within -180..180.

    A polygon crosses it when an edge spans more than 180 degrees of longitude: the short way between its
    ends goes over +-180 (edges along the +-180 meridian itself do not count).
    """
    parts = shapely.get_parts(geometry)
    crossing = [_crosses(part) for part in parts]
    if not any(crossing):
        return geometry
    pieces = []
    for part, crosses in zip(parts, crossing, strict=True):
        if not crosses:
            pieces.append(part)
            continue
        shifted = shapely.transform(part, lambda xy: np.column_stack([xy[:, 0] % 360, xy[:, 1]]))
        pieces.append(shapely.clip_by_rect(shifted, 0, -90, 180, 90))
        west = shapely.clip_by_rect(shifted, 180, -90, 360, 90)
        pieces.append(shapely.transform(west, lambda xy: xy - [360, 0]))
    return shapely.union_all([piece for piece in pieces if not piece.is_empty])


def _crosses(polygon: shapely.Geometry) -> bool:
    for ring in shapely.get_rings(polygon):
        lon = shapely.get_coordinates(ring)[:, 0]
        on_meridian = (np.abs(lon[:-1]) == 180) & (np.abs(lon[1:]) == 180)
        if ((np.abs(np.diff(lon)) > 180) & ~on_meridian).any():
            return True
    return False


def _bbox(text: str) -> tuple[float, float, float, float] | None:
    """The four numbers of a ``W,S,E,N`` text, or None when it is not four numbers."""
    try:
        west, south, east, north = (float(value) for value in text.split(","))
    except ValueError:
        return None
    return west, south, east, north


def _wrapping_box(bbox: tuple[float, float, float, float]) -> shapely.Geometry:
    """A bbox with W > E, which wraps over the antimeridian (RFC 7946), as its two boxes."""
    west, south, east, north = bbox
    if not (-180 <= east < west <= 180 and -90 <= south < north <= 90):
        raise InputError(
            f"bbox {bbox} must be W,S,E,N in degrees within -180..180 and -90..90, S < N "
            "(W > E wraps over the antimeridian)"
        )
    return shapely.union_all([shapely.box(west, south, 180, north), shapely.box(-180, south, east, north)])


def _cell_list(region: grid.Region) -> np.ndarray | None:
    """The region's H3 cells when it is given as cells, else None."""
    if isinstance(region, shapely.Geometry | os.PathLike):
        return None
    tokens = [t for t in re.split(r"[,\s]+", region) if t] if isinstance(region, str) else list(region)
    try:
        return grid.as_cells(tokens)
    except GeolinkError:
        return None
