"""Regions to H3 cells: parse a region (bbox, vector file or cells), cover it with cells, walk the hierarchy.

H3 ids are ``int64`` everywhere (the h3 integer form; bit 63 is always 0, so no id is negative). Geometry is
lon/lat in EPSG:4326.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from h3.api import basic_int as h3
from h3ronpy.vector import cells_to_coordinates, cells_to_wkb_polygons

from geolink_store.constants import EQUAL_AREA, GEOPARQUET_SUFFIXES, MAX_RES, VECTOR_SUFFIXES, WGS84
from geolink_store.errors import GeolinkError, InputError
from geolink_store.polyfill import polygon_to_cells

if TYPE_CHECKING:
    from pyproj import Transformer

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
    check_cell_count(estimated_cells(geometry, res), res)
    found = polygon_to_cells(geometry, res, "overlap" if touching else "center")
    if not found.size:
        raise GeolinkError(
            f"the region holds no H3 cell centre at resolution {res}; "
            "use a finer resolution or touching cells"
        )
    return np.sort(found)


@functools.cache
def _to_equal_area() -> Transformer:
    from pyproj import Transformer  # on first use: SQL sessions import this module for its H3 functions

    return Transformer.from_crs(WGS84, EQUAL_AREA, always_xy=True)


def estimated_cells(geometry: shapely.Geometry, res: int) -> float:
    """About how many H3 cells at ``res`` cover ``geometry`` (lon/lat, cut at the antimeridian): its area."""
    to_equal_area = _to_equal_area()
    dense = shapely.segmentize(geometry, 1.0)  # degrees: edges follow the projection
    projected = shapely.transform(dense, lambda xy: np.column_stack(to_equal_area.transform(*xy.T)))
    return shapely.area(projected) / 1e6 / h3.average_hexagon_area(res, unit="km^2")


def check_cell_count(estimate: float, res: int, what: str = "the region") -> None:
    """Refuse, before covering it, a region of ``estimate`` cells, more than :data:`MAX_REGION_CELLS`."""
    if estimate > MAX_REGION_CELLS:
        raise InputError(
            f"{what} would hold about {estimate:,.0f} H3 cells at resolution {res} "
            f"(limit {MAX_REGION_CELLS:,}): use a coarser resolution or split the region"
        )


def cell_geometries(cells: Iterable[int]) -> np.ndarray:
    """The hexagon (or pentagon) of each cell as a shapely Polygon in EPSG:4326, in the order given.

    Built in Rust (h3ronpy) and decoded in one shapely call: 1M cells in a few seconds.

    Raises:
        InputError: an id that is not a valid H3 cell.
    """
    ids = _valid_ids(cells)
    if not ids.size:
        return np.empty(0, dtype=object)
    wkb = pa.array(cells_to_wkb_polygons(pa.array(ids.view(np.uint64))))
    return shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))


def cell_lonlat(cells: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees, EPSG:4326) of each cell's centre, as two float64 arrays.

    Raises:
        InputError: an id that is not a valid H3 cell.
    """
    ids = _valid_ids(cells)
    if not ids.size:
        return np.empty(0), np.empty(0)
    centres = pa.record_batch(cells_to_coordinates(pa.array(ids.view(np.uint64))))
    return centres["lng"].to_numpy(), centres["lat"].to_numpy()


def _valid_ids(cells: Iterable[int]) -> np.ndarray:
    ids = np.asarray(cells if isinstance(cells, np.ndarray) else list(cells), dtype=np.int64).reshape(-1)
    bad = ~valid_cells(ids)
    if bad.any():
        raise InputError(f"{int(ids[bad][0])} is not a valid H3 cell id")
    return ids


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
    contain: Literal["center", "overlap", "full"] = "center",
) -> np.ndarray:
    """The cells at resolution ``res`` of a polygon (degrees, EPSG:4326), as ``int64``.

    ``contain="center"`` keeps cells whose centre lies inside, ``"overlap"`` every cell that touches it,
    ``"full"`` the cells wholly inside it.
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


# ---- Element-wise forms over numpy columns (the H3 functions of SQL sessions). An invalid input gives -1 (no
# H3 id is negative) or None, never an exception. Bit layout: resolution in bits 52-55, digit r (1-15) in bits
# 3 * (15 - r) .. 3 * (15 - r) + 2, unused finer digits all 7.

MAX_LIST_CELLS = 10_000_000
"""The most cells one call of :func:`children_lists` or :func:`disk_lists` may return."""

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
_NIBBLES = np.full(256, 255, np.uint8)
_NIBBLES[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
_NIBBLES[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def valid_cells(cells: np.ndarray) -> np.ndarray:
    """Whether each ``int64`` is a valid H3 cell, as a bool array.

    One h3 call per id: measured faster than the same rules in numpy on the bits.
    """
    cells = np.maximum(np.asarray(cells, dtype=np.int64), 0)  # 0 is not a cell either
    return np.fromiter(map(h3.is_valid_cell, cells.tolist()), dtype=bool, count=len(cells))


def resolutions(cells: np.ndarray) -> np.ndarray:
    """The resolution bits of each id (no validity check), as ``int64``."""
    return (np.asarray(cells, dtype=np.int64) >> 52) & 0xF


def hex_id_array(cells: np.ndarray) -> pa.StringArray:
    """:func:`hex_id` element-wise, as an Arrow string array; a negative id gives null."""
    cells = np.asarray(cells, dtype=np.int64)
    octets = cells.astype(">i8").view(np.uint8).reshape(-1, 8)
    nibbles = np.empty((len(cells), 16), np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = octets >> 4, octets & 0xF
    offsets = np.arange(0, 16 * len(cells) + 1, 16, dtype=np.int32)
    padded = pa.StringArray.from_buffers(
        len(cells), pa.py_buffer(offsets), pa.py_buffer(_HEX_DIGITS[nibbles])
    )
    text = pc.utf8_ltrim(padded, characters="0")
    if (cells <= 0).any():
        text = pc.if_else(pa.array(cells == 0), "0", text)
        text = pc.if_else(pa.array(cells < 0), pa.scalar(None, pa.string()), text)
    return text


def cells_from_hex_array(texts: pa.Array) -> np.ndarray:
    """Hexadecimal strings (any case, at most 16 digits) to ``int64`` ids, -1 where a string is not one.

    Like h3's ``str_to_int``, the value is not checked to be a valid cell (see :func:`valid_cells`).
    """
    texts = texts.cast(pa.string())
    size = pc.binary_length(texts)
    fits = pc.fill_null(
        pc.and_(pc.and_(pc.greater(size, 0), pc.less_equal(size, 16)), pc.string_is_ascii(texts)), False
    )
    padded = pc.utf8_lpad(pc.if_else(fits, texts, "0"), 16, "0")
    first = np.frombuffer(padded.buffers()[1], np.int32, count=1, offset=4 * padded.offset)[0]
    data = np.frombuffer(padded.buffers()[2], np.uint8, count=16 * len(padded), offset=first)
    nibbles = _NIBBLES[data].reshape(-1, 16)
    octets = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    value = np.ascontiguousarray(octets).view(">i8").ravel().astype(np.int64)
    ok = fits.to_numpy(zero_copy_only=False) & (nibbles != 255).all(axis=1) & (value >= 0)
    return np.where(ok, value, -1)


def parents_at(cells: np.ndarray, res: np.ndarray | int) -> np.ndarray:
    """:func:`parents` element-wise with a resolution per row: -1 for an invalid cell or a finer ``res``."""
    cells = np.asarray(cells, dtype=np.int64)
    res = np.broadcast_to(np.asarray(res, dtype=np.int64), cells.shape)
    ok = (res >= 0) & (res <= resolutions(cells)) & valid_cells(cells)
    target = np.where(ok, res, 0)
    parent = (cells & ~np.int64(0xF << 52)) | (target << 52) | ((np.int64(1) << (3 * (15 - target))) - 1)
    return np.where(ok, parent, -1)


def latlng_cells(lat: np.ndarray, lng: np.ndarray, res: np.ndarray | int) -> np.ndarray:
    """The cell at ``res`` of each point (degrees), element-wise, as ``int64``; -1 for a bad point or res."""
    lat, lng = np.asarray(lat, dtype=np.float64), np.asarray(lng, dtype=np.float64)
    res = np.broadcast_to(np.asarray(res, dtype=np.int64), lat.shape)
    ok = np.isfinite(lat) & np.isfinite(lng) & (np.abs(lat) <= 90) & (res >= 0) & (res <= MAX_RES)
    safe_lat, safe_lng, safe_res = np.where(ok, lat, 0.0), np.where(ok, lng, 0.0), np.where(ok, res, 0)
    found = np.fromiter(
        map(h3.latlng_to_cell, safe_lat.tolist(), safe_lng.tolist(), safe_res.tolist()),
        dtype=np.int64,
        count=len(lat),
    )
    return np.where(ok, found, -1)


def children_lists(cells: np.ndarray, res: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every child at ``res`` of each cell, element-wise, as (offsets [n + 1], children, ok [n]).

    A row that is not ``ok`` (an invalid cell, or a ``res`` coarser than the cell's) has an empty list.

    Raises:
        GeolinkError: the lists would hold more than :data:`MAX_LIST_CELLS` cells.
    """
    cells = np.asarray(cells, dtype=np.int64)
    res = np.broadcast_to(np.asarray(res, dtype=np.int64), cells.shape)
    ok = (res <= MAX_RES) & (res >= resolutions(cells)) & valid_cells(cells)
    _check_list_size(float(np.sum(7.0 ** (res[ok] - resolutions(cells[ok])))), "h3_cell_to_children")
    rows = zip(cells.tolist(), res.tolist(), ok, strict=True)
    return (*_flatten([h3.cell_to_children(c, r) if good else [] for c, r, good in rows]), ok)


def disk_lists(cells: np.ndarray, k: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cells within ``k`` steps of each cell (itself included), element-wise: (offsets, cells, ok).

    A row that is not ``ok`` (an invalid cell or a negative ``k``) has an empty list.

    Raises:
        GeolinkError: the lists would hold more than :data:`MAX_LIST_CELLS` cells.
    """
    cells = np.asarray(cells, dtype=np.int64)
    k = np.broadcast_to(np.asarray(k, dtype=np.int64), cells.shape)
    ok = (k >= 0) & valid_cells(cells)
    _check_list_size(float(np.sum(1.0 + 3.0 * k[ok] * (k[ok] + 1.0))), "h3_grid_disk")
    rows = zip(cells.tolist(), k.tolist(), ok, strict=True)
    return (*_flatten([h3.grid_disk(c, steps) if good else [] for c, steps, good in rows]), ok)


def boundary_polygons(cells: np.ndarray) -> np.ndarray:
    """:func:`cell_geometries` element-wise, with None for an invalid cell."""
    cells = np.asarray(cells, dtype=np.int64)
    ok = valid_cells(cells)
    polygons = np.full(len(cells), None, dtype=object)
    polygons[ok] = cell_geometries(cells[ok])
    return polygons


def cell_shares(polygon: shapely.Geometry, res: int) -> tuple[np.ndarray, np.ndarray]:
    """The cells at ``res`` that a polygon (degrees) touches, and the share of each cell's area inside it.

    See :func:`cover_shares`, which does this for many polygons at once.
    """
    _, cells, shares = cover_shares([polygon], res)
    return cells, shares


def cover_shares(
    polygons: Iterable[shapely.Geometry | None], res: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For many polygons (degrees): (polygon index, cell, share) of every cell at ``res`` each one touches.

    A share is the part of the cell's area inside the polygon: 1 for the cells it contains (no intersection
    computed), an area ratio in lon/lat degrees for the others (within about 1e-4 of the equal-area ratio for
    cells up to a few km across). Polygons without area (None, points, lines) touch no cell.

    Raises:
        GeolinkError: a polygon would cover more than :data:`MAX_REGION_CELLS` cells at ``res``.
    """
    owners, found, shapes = [], [], []
    for index, polygon in enumerate(polygons):
        if polygon is None or polygon.is_empty or polygon.area == 0:
            continue
        polygon = _polygonal(polygon, "the polygon")  # repaired, without its lines and points
        check_cell_count(estimated_cells(polygon, res), res)
        cells = polygon_cells(polygon, res, contain="overlap")
        owners.append(np.full(len(cells), index))
        found.append(cells)
        shapes.append(polygon)
    if not found:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64)
    owner, cells = np.concatenate(owners), np.concatenate(found)
    unique, inverse = np.unique(cells, return_inverse=True)
    hexagons = boundary_polygons(unique)[inverse]
    shapely.prepare(np.array(shapes, dtype=object))
    zones = np.array(shapes, dtype=object)[np.repeat(np.arange(len(shapes)), [len(c) for c in found])]
    shares = np.ones(len(cells))
    edge = ~shapely.contains(zones, hexagons)
    shares[edge] = shapely.area(shapely.intersection(hexagons[edge], zones[edge])) / shapely.area(
        hexagons[edge]
    )
    keep = shares > 0
    return owner[keep], cells[keep], shares[keep]


def _check_list_size(total: float, function: str) -> None:
    if total > MAX_LIST_CELLS:
        raise GeolinkError(
            f"{function} would return {total:,.0f} cells (limit {MAX_LIST_CELLS:,}); "
            "use a smaller resolution step or k, or fewer rows"
        )


def _flatten(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum([len(found) for found in lists], out=offsets[1:])
    values = np.fromiter((cell for found in lists for cell in found), dtype=np.int64, count=int(offsets[-1]))
    return offsets, values


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
    """The id of ``cell``, None when it is no H3 cell; GeolinkError when it does not fit in 64 bits."""
    try:
        cell_int = h3.str_to_int(cell.strip()) if isinstance(cell, str) else int(cell)
        return cell_int if h3.is_valid_cell(cell_int) else None
    except (ValueError, TypeError):
        return None
    except OverflowError:  # h3's own error for an id beyond 64 bits or a negative one
        raise InputError(
            f"{cell!r} is not a valid H3 cell id (an H3 id is an unsigned 64-bit integer, 15 hex digits)"
        ) from None


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
    import geopandas as gpd  # on first use (see _to_equal_area)

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
