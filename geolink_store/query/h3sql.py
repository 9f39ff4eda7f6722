"""H3 functions for DuckDB sessions: Arrow UDFs over :mod:`geolink_store.grid`, one numpy call per batch.

DuckDB hands each function a batch of up to 2,048 rows as Arrow arrays; every function works on the whole
batch with numpy (ids, strings and parents from the bits), h3ronpy (points: one call per batch, in Rust),
or one h3 call per row where neither has a batch form (children, disks, boundaries). H3 ids are BIGINT. A
NULL, an invalid cell, a bad resolution or a point off the globe gives NULL, never an error; only lists that
would exceed :data:`~geolink_store.grid.MAX_LIST_CELLS` cells raise one.

=====================================  ===========================================================
``h3_to_string(cell)``                 hexadecimal id (``8c6acc2c9af15ff``)
``h3_from_string(text)``               BIGINT id from its hexadecimal form
``h3_is_valid_cell(cell)``             whether the BIGINT is a valid H3 cell
``h3_get_resolution(cell)``            0-15
``h3_cell_to_parent(cell, res)``       the ancestor at the coarser ``res``
``h3_cell_to_children(cell, res)``     BIGINT[] of the descendants at the finer ``res``
``h3_grid_disk(cell, k)``              BIGINT[] of the cells within ``k`` steps (itself included)
``h3_latlng_to_cell(lat, lng, res)``   the cell holding a point (degrees; latitude first, as in H3)
``h3_cell_to_boundary_wkt(cell)``      the hexagon as WKT (lon lat order, EPSG:4326)
``h3_cell_to_boundary_wkb(cell)``      the same as WKB
``h3_cell_to_boundary_geometry(cell)`` the same as a spatial GEOMETRY (a macro over the WKB)
=====================================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from duckdb.sqltypes import BIGINT, BLOB, BOOLEAN, DOUBLE, INTEGER, VARCHAR
from h3ronpy.vector import coordinates_to_cells

from geolink_store import grid
from geolink_store.constants import MAX_RES

Column = pa.Array | pa.ChunkedArray


def _ints(column: Column) -> np.ndarray:
    """An integer column as ``int64`` with NULL as -1 (never a valid id, resolution or k)."""
    return pc.fill_null(column, -1).to_numpy().astype(np.int64, copy=False)


def _floats(column: Column) -> np.ndarray:
    return pc.fill_null(column, np.nan).to_numpy().astype(np.float64, copy=False)


def _ids(values: np.ndarray) -> pa.Array:
    return pa.array(values, mask=values < 0)


def to_string(cells: Column) -> pa.Array:
    return grid.hex_id_array(_ints(cells))


def from_string(texts: Column) -> pa.Array:
    return _ids(grid.cells_from_hex_array(pa.concat_arrays(pa.chunked_array(texts).chunks)))


def is_valid_cell(cells: Column) -> pa.Array:
    values = _ints(cells)
    return pa.array(grid.valid_cells(values), mask=pc.is_null(cells).to_numpy(zero_copy_only=False))


def get_resolution(cells: Column) -> pa.Array:
    values = _ints(cells)
    return pa.array(grid.resolutions(values).astype(np.int32), mask=~grid.valid_cells(values))


def cell_to_parent(cells: Column, res: Column) -> pa.Array:
    return _ids(grid.parents_at(_ints(cells), _ints(res)))


def latlng_to_cell(lat: Column, lng: Column, res: Column) -> pa.Array:
    """The cell of each point, the batch in one h3ronpy call (h3-py has no batch form of this one)."""
    lat_deg, lng_deg, level = _floats(lat), _floats(lng), _ints(res)
    ok = np.isfinite(lat_deg) & np.isfinite(lng_deg) & (np.abs(lat_deg) <= 90) & (level >= 0)
    ok &= level <= MAX_RES
    found = coordinates_to_cells(
        np.where(ok, lat_deg, 0.0), np.where(ok, lng_deg, 0.0), np.where(ok, level, 0).astype(np.uint8)
    )
    cells = pa.array(found).to_numpy(zero_copy_only=False).view(np.int64)
    return _ids(np.where(ok, cells, -1))


def _lists(found: tuple[np.ndarray, np.ndarray, np.ndarray]) -> pa.Array:
    offsets, values, ok = found
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), mask=pa.array(~ok))


def cell_to_children(cells: Column, res: Column) -> pa.Array:
    return _lists(grid.children_lists(_ints(cells), _ints(res)))


def grid_disk(cells: Column, k: Column) -> pa.Array:
    return _lists(grid.disk_lists(_ints(cells), _ints(k)))


def boundary_wkt(cells: Column) -> pa.Array:
    return pa.array(
        shapely.to_wkt(grid.boundary_polygons(_ints(cells)), rounding_precision=-1), type=pa.string()
    )


def boundary_wkb(cells: Column) -> pa.Array:
    return pa.array(shapely.to_wkb(grid.boundary_polygons(_ints(cells))), type=pa.binary())


UDFS: dict[str, tuple[Callable[..., pa.Array], list[duckdb.DuckDBPyType], duckdb.DuckDBPyType]] = {
    "h3_to_string": (to_string, [BIGINT], VARCHAR),
    "h3_from_string": (from_string, [VARCHAR], BIGINT),
    "h3_is_valid_cell": (is_valid_cell, [BIGINT], BOOLEAN),
    "h3_get_resolution": (get_resolution, [BIGINT], INTEGER),
    "h3_cell_to_parent": (cell_to_parent, [BIGINT, INTEGER], BIGINT),
    "h3_cell_to_children": (cell_to_children, [BIGINT, INTEGER], duckdb.list_type(BIGINT)),
    "h3_grid_disk": (grid_disk, [BIGINT, INTEGER], duckdb.list_type(BIGINT)),
    "h3_latlng_to_cell": (latlng_to_cell, [DOUBLE, DOUBLE, INTEGER], BIGINT),
    "h3_cell_to_boundary_wkt": (boundary_wkt, [BIGINT], VARCHAR),
    "h3_cell_to_boundary_wkb": (boundary_wkb, [BIGINT], BLOB),
}
GEOMETRY_MACRO = (
    "CREATE MACRO h3_cell_to_boundary_geometry(cell) AS ST_GeomFromWKB(h3_cell_to_boundary_wkb(cell))"
)


def register_h3_functions(connection: duckdb.DuckDBPyConnection, *, spatial: bool) -> None:
    """Register the H3 functions on ``connection`` (the GEOMETRY macro only with the spatial extension)."""
    for name, (function, parameters, returns) in UDFS.items():
        connection.create_function(
            name, function, parameters, returns, type="arrow", null_handling="special", side_effects=False
        )
    if spatial:
        connection.execute(GEOMETRY_MACRO)


__all__ = ["UDFS", "register_h3_functions"]
