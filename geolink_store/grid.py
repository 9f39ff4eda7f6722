"""Regions to H3 cells: parse a region (bbox, vector file or cells), cover it with cells, walk the hierarchy.

H3 ids are ``int64`` everywhere (the h3 integer form; bit 63 is always 0, so no id is negative). Geometry is
lon/lat in EPSG:4326.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import shapely
from h3.api import basic_int as h3
from pyproj import Transformer

from geolink_store.constants import EQUAL_AREA, GEOPARQUET_SUFFIXES, MAX_RES, VECTOR_SUFFIXES, WGS84
from geolink_store.errors import GeolinkError

MAX_REGION_CELLS = 20_000_000
"""The most cells one region may cover (about 160 GB of 1 KiB vectors): larger ones are refused up front."""

Region = str | os.PathLike | shapely.Geometry | Iterable[int | str]

_BBOX = re.compile(r"^\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*$")


def check_resolution(res: int, name: str = "resolution") -> int:
    """Return ``res`` as an int if it is a valid H3 resolution (0-15), else raise GeolinkError."""
    if isinstance(res, bool) or not isinstance(res, int | np.integer) or not 0 <= res <= MAX_RES:
        raise GeolinkError(f"H3 {name} must be an integer from 0 to {MAX_RES}, got {res!r}")
    return int(res)


def as_cells(cells: Iterable[int | str]) -> np.ndarray:
    """Normalise H3 ids (ints or hex strings) to an ``int64`` array, raising GeolinkError on an invalid id."""
    ids = []
    for cell in cells:
        cell_int = _cell_to_int(cell)
        if cell_int is None:
            raise GeolinkError(f"{cell!r} is not a valid H3 cell id")
        ids.append(cell_int)
    return np.asarray(ids, dtype=np.int64)


def region_geometry(region: Region) -> shapely.Geometry:
    """The region as one lon/lat (EPSG:4326) geometry.

    Args:
        region: ``"W,S,E,N"`` in degrees; a path to a GeoJSON/GPKG/GeoParquet file in any CRS (its polygons
            are unioned); a shapely geometry in EPSG:4326; or H3 cells (ints, hex strings, or one
            comma-separated string of hex ids), whose hexagons are unioned.

    Raises:
        GeolinkError: the region is none of these, or holds no area.
    """
    if isinstance(region, shapely.Geometry):
        return _polygonal(region, "the region geometry")
    if isinstance(region, os.PathLike):
        return _read_region_file(Path(region))
    if isinstance(region, str):
        if _BBOX.match(region):
            return _parse_bbox(region)
        if _names_a_file(region):
            return _read_region_file(Path(region))
        cells = _parse_cell_list(region)
        if cells is None:
            raise GeolinkError(
                f"region {region!r} is neither W,S,E,N (degrees), an existing GeoJSON/GPKG/GeoParquet file, "
                "nor a comma-separated list of H3 cells"
            )
        return shapely.union_all(cell_geometries(cells))
    return shapely.union_all(cell_geometries(as_cells(region)))


def region_cells(region: Region, res: int, *, touching: bool = False) -> np.ndarray:
    """The H3 cells at resolution ``res`` that cover a region, as a sorted ``int64`` array.

    Args:
        region: see :func:`region_geometry`. Cells given at another resolution are replaced by their parents
            (coarser ``res``) or children (finer ``res``).
        res: H3 resolution, 0-15.
        touching: take every cell whose hexagon touches the region, not only those whose centre lies inside.

    Raises:
        GeolinkError: bad resolution or region, or a region that holds no cell centre at ``res``.
    """
    res = check_resolution(res)
    cells = _given_cells(region)
    if cells is not None:
        return _cells_at(cells, res)
    geometry = region_geometry(region)
    _check_cell_count(geometry, res)
    contain = "overlap" if touching else "center"
    found = h3.h3shape_to_cells_experimental(h3.geo_to_h3shape(geometry), res, contain=contain)
    if not found:
        raise GeolinkError(
            f"the region holds no H3 cell centre at resolution {res}; "
            "use a finer resolution or touching cells"
        )
    return np.sort(np.asarray(found, dtype=np.int64))


def _check_cell_count(geometry: shapely.Geometry, res: int) -> None:
    """Refuse, before covering it, a region that would hold more than :data:`MAX_REGION_CELLS` cells."""
    to_equal_area = Transformer.from_crs(WGS84, EQUAL_AREA, always_xy=True)
    dense = shapely.segmentize(geometry, 1.0)  # degrees: edges follow the projection
    area_km2 = (
        shapely.area(shapely.transform(dense, lambda xy: np.column_stack(to_equal_area.transform(*xy.T))))
        / 1e6
    )
    estimate = area_km2 / h3.average_hexagon_area(res, unit="km^2")
    if estimate > MAX_REGION_CELLS:
        raise GeolinkError(
            f"the region holds about {estimate:,.0f} H3 cells at resolution {res} "
            f"(limit {MAX_REGION_CELLS:,}): "
            "use a coarser resolution or split the region"
        )


def cell_geometries(cells: Iterable[int]) -> np.ndarray:
    """The hexagon (or pentagon) of each cell as a shapely Polygon in EPSG:4326, in the order given."""
    return np.array([shapely.Polygon(cell_boundary_lonlat(cell)) for cell in cells], dtype=object)


def cell_lonlat(cells: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees, EPSG:4326) of each cell's centre, as two float64 arrays."""
    latlng = np.array([h3.cell_to_latlng(int(cell)) for cell in cells], dtype=np.float64)
    latlng = latlng.reshape(-1, 2)
    return latlng[:, 1], latlng[:, 0]


def resolution(cell: int) -> int:
    """The H3 resolution of one cell."""
    return int(h3.get_resolution(int(cell)))


def hex_id(cell: int) -> str:
    """The hexadecimal string form of an ``int64`` H3 id."""
    return h3.int_to_str(int(cell))


def points_to_cells(lon: Iterable[float], lat: Iterable[float], res: int) -> np.ndarray:
    """The cell at resolution ``res`` of each point (degrees, EPSG:4326), element-wise, as ``int64``."""
    return np.array(
        [h3.latlng_to_cell(y, x, res) for x, y in zip(lon, lat, strict=True)], dtype=np.int64
    ).reshape(-1)


def cell_boundary_lonlat(cell: int) -> np.ndarray:
    """The corners of a cell as a (K, 2) array of longitude, latitude (degrees, EPSG:4326)."""
    return np.array(h3.cell_to_boundary(int(cell)), dtype=np.float64)[:, ::-1]


def polygon_cells(
    polygon: shapely.Polygon | shapely.MultiPolygon,
    res: int,
    contain: Literal["center", "overlap"] = "center",
) -> np.ndarray:
    """The cells at resolution ``res`` of a polygon (degrees, EPSG:4326), as ``int64``.

    ``contain="center"`` keeps cells whose centre lies inside, ``"overlap"`` every cell that touches it.
    """
    shape = h3.geo_to_h3shape(polygon)
    return np.array(h3.h3shape_to_cells_experimental(shape, res, contain=contain), dtype=np.int64)


def disk(cell: int, k: int) -> np.ndarray:
    """The cells within ``k`` grid steps of ``cell`` (itself included), as ``int64``."""
    return np.array(h3.grid_disk(int(cell), k), dtype=np.int64)


def compact(cells: Iterable[int]) -> np.ndarray:
    """The fewest cells (of mixed resolutions) that cover exactly ``cells``, as ``int64``."""
    return np.array(h3.compact_cells([int(cell) for cell in cells]), dtype=np.int64)


def parents(cells: Iterable[int], res: int) -> np.ndarray:
    """The parent of each cell at the coarser (or equal) resolution ``res``, element-wise, as ``int64``."""
    res = check_resolution(res, "parent resolution")
    cells = np.asarray(list(cells), dtype=np.int64)
    _check_not_finer(cells, res, "parent resolution", coarser=True)
    return np.array([h3.cell_to_parent(int(cell), res) for cell in cells], dtype=np.int64)


def children(cells: Iterable[int], fine_res: int) -> np.ndarray:
    """Every child of the cells at the finer (or equal) resolution ``fine_res``, as ``int64``.

    The children are grouped by parent in the order given; ``parents(children(cells, f), r)`` maps them back.
    """
    fine_res = check_resolution(fine_res, "fine resolution")
    cells = np.asarray(list(cells), dtype=np.int64)
    _check_not_finer(cells, fine_res, "fine resolution", coarser=False)
    found = [h3.cell_to_children(int(cell), fine_res) for cell in cells]
    return np.array([child for group in found for child in group], dtype=np.int64)


def _check_not_finer(cells: np.ndarray, res: int, name: str, *, coarser: bool) -> None:
    resolutions = {h3.get_resolution(int(cell)) for cell in cells}
    bad = [r for r in resolutions if (r < res if coarser else r > res)]
    if bad:
        relation = "coarser than or equal to" if coarser else "finer than or equal to"
        raise GeolinkError(f"{name} {res} must be {relation} the cells' resolution {bad[0]}")


def _cells_at(cells: np.ndarray, res: int) -> np.ndarray:
    resolutions = {h3.get_resolution(int(cell)) for cell in cells}
    if len(resolutions) != 1:
        raise GeolinkError(
            f"region cells mix H3 resolutions {sorted(resolutions)}; give cells of one resolution"
        )
    given = resolutions.pop()
    if given >= res:
        return np.unique(parents(cells, res))
    return np.unique(children(cells, res))


def _cell_to_int(cell: int | str) -> int | None:
    try:
        cell_int = h3.str_to_int(cell.strip()) if isinstance(cell, str) else int(cell)
    except (ValueError, TypeError):
        return None
    return cell_int if h3.is_valid_cell(cell_int) else None


def _parse_cell_list(text: str) -> np.ndarray | None:
    tokens = [token for token in re.split(r"[,\s]+", text) if token]
    ids = [_cell_to_int(token) for token in tokens]
    if not ids or any(cell is None for cell in ids):
        return None
    return np.asarray(ids, dtype=np.int64)


def _given_cells(region: Region) -> np.ndarray | None:
    if isinstance(region, shapely.Geometry | os.PathLike):
        return None
    if isinstance(region, str):
        if _BBOX.match(region) or _names_a_file(region):
            return None
        return _parse_cell_list(region)
    return as_cells(region)


def _names_a_file(text: str) -> bool:
    return Path(text).is_file() or Path(text).suffix.lower() in VECTOR_SUFFIXES


def _parse_bbox(text: str) -> shapely.Polygon:
    west, south, east, north = (float(value) for value in _BBOX.match(text).groups())
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise GeolinkError(
            f"bbox {text!r} must be W,S,E,N in degrees with -180 <= W < E <= 180 and -90 <= S < N <= 90"
        )
    return shapely.box(west, south, east, north)


def _read_region_file(path: Path) -> shapely.Geometry:
    if not path.is_file():
        raise GeolinkError(f"region file {path} does not exist")
    try:
        if path.suffix.lower() in GEOPARQUET_SUFFIXES:
            frame = gpd.read_parquet(path)
        else:
            frame = gpd.read_file(path)
    except Exception as error:  # pyogrio/pyarrow raise many types for unreadable files
        raise GeolinkError(f"cannot read region file {path}: {error}") from error
    if frame.empty:
        raise GeolinkError(f"region file {path} holds no features")
    if frame.crs is None:
        raise GeolinkError(f"region file {path} has no CRS; save it with one (e.g. EPSG:4326)")
    repaired = shapely.make_valid(frame.to_crs(WGS84).geometry.values)  # self-intersections break the union
    return _polygonal(shapely.union_all(repaired), f"region file {path}")


def _polygonal(geometry: shapely.Geometry, what: str) -> shapely.Geometry:
    parts = shapely.get_parts(shapely.make_valid(geometry))
    area = shapely.union_all(parts[np.isin(shapely.get_type_id(parts), [3, 6])])  # Polygon, MultiPolygon
    if area.is_empty or area.area == 0:
        raise GeolinkError(f"{what} holds no polygon; a region needs an area (a bbox, polygons, or H3 cells)")
    return area
