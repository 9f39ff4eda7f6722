"""H3 functions in SQL: each against h3-py row by row, NULL for bad input, loaded only when named.

Rows are for REAL H3 cells (a res-9 grid around Kampala) with SYNTHETIC vectors (geolink_store.testing).
"""

from __future__ import annotations

import subprocess
import sys

import h3
import numpy as np
import pytest
import shapely

from geolink_store.errors import GeolinkError
from geolink_store.query.h3sql import UDFS
from geolink_store.query.sql import H3_FUNCTIONS, SqlSession, run_sql
from geolink_store.testing import synthetic_store


@pytest.fixture(scope="module")
def store_and_rows(tmp_path_factory: pytest.TempPathFactory):
    return synthetic_store(tmp_path_factory.mktemp("h3sql") / "db", n=400)


def test_every_function_is_named_for_the_session_plan() -> None:
    assert set(H3_FUNCTIONS) == {*UDFS, "h3_cell_to_boundary_geometry"}


def test_scalar_functions_equal_h3_row_by_row(store_and_rows) -> None:
    store, rows = store_and_rows
    result = run_sql(
        store.path,
        "SELECT h3, h3_to_string(h3) AS hex, h3_from_string(upper(h3_to_string(h3))) AS back, "
        "h3_cell_to_parent(h3, 6) AS parent, h3_get_resolution(h3) AS res, h3_is_valid_cell(h3) AS valid, "
        "h3_latlng_to_cell(lat, lon, 11) AS point_cell FROM cells ORDER BY h3",
    ).to_pylist()
    lon, lat = (
        dict(zip(rows["h3"].to_pylist(), rows["lon"].to_pylist(), strict=True)),
        dict(zip(rows["h3"].to_pylist(), rows["lat"].to_pylist(), strict=True)),
    )
    for row in result:
        cell = row["h3"]
        assert row["hex"] == h3.int_to_str(cell) and row["back"] == cell and row["res"] == 9 and row["valid"]
        assert row["parent"] == h3.str_to_int(h3.cell_to_parent(h3.int_to_str(cell), 6))
        assert row["point_cell"] == h3.str_to_int(h3.latlng_to_cell(lat[cell], lon[cell], 11))


def test_list_and_boundary_functions_equal_h3(store_and_rows) -> None:
    store, rows = store_and_rows
    cell = rows["h3"][7].as_py()
    row = run_sql(
        store.path,
        f"SELECT h3_cell_to_children({cell}, 11) AS kids, h3_grid_disk({cell}, 2) AS disk, "
        f"h3_cell_to_boundary_wkt({cell}) AS wkt, "
        f"ST_Equals(h3_cell_to_boundary_geometry({cell}), "
        f"(SELECT geometry FROM cells WHERE h3 = {cell})) AS same",
    ).to_pylist()[0]
    hex_cell = h3.int_to_str(cell)
    assert sorted(row["kids"]) == sorted(h3.str_to_int(c) for c in h3.cell_to_children(hex_cell, 11))
    assert sorted(row["disk"]) == sorted(h3.str_to_int(c) for c in h3.grid_disk(hex_cell, 2))
    corners = [(lng, lat) for lat, lng in h3.cell_to_boundary(hex_cell)]
    assert shapely.from_wkt(row["wkt"]).equals_exact(shapely.Polygon(corners), 1e-9) and row["same"]


def test_bad_input_gives_null_and_huge_lists_an_error(store_and_rows) -> None:
    store = store_and_rows[0]
    row = run_sql(
        store.path,
        "SELECT h3_to_string(NULL) a, h3_to_string(-1) b, h3_from_string('zz') c, h3_from_string('') d, "
        "h3_cell_to_parent(5, 1) e, h3_cell_to_parent(617733123060924415, 14) f, h3_get_resolution(7) g, "
        "h3_cell_to_children(617733123060924415, 3) i, h3_grid_disk(1, 1) j, "
        "h3_grid_disk(617733123060924415, -1) k, "
        "h3_latlng_to_cell(100, 0, 3) l, h3_latlng_to_cell(0, 0, 16) m, h3_cell_to_boundary_wkt(7) n",
    ).to_pylist()[0]
    assert set(row.values()) == {None}, row
    with pytest.raises(GeolinkError, match="h3_cell_to_children would return"):
        run_sql(store.path, "SELECT sum(len(h3_cell_to_children(h3, 15))) FROM cells")


def test_latlng_to_cell_equals_h3py_over_the_globe_and_every_resolution(store_and_rows) -> None:
    """The batched (h3ronpy) point lookup against h3-py, on random points incl. poles, the antimeridian and
    longitudes past +-180 (which h3-py wraps)."""
    rng = np.random.default_rng(7)
    lat = np.concatenate([rng.uniform(-90, 90, 3000), [90.0, -90.0, 0.0, 12.5, -33.0]])
    lng = np.concatenate([rng.uniform(-540, 540, 3000), [0.0, 0.0, 180.0, -180.0, 719.5]])
    res = rng.integers(0, 16, len(lat))
    with SqlSession(store_and_rows[0].path, prepare_for="SELECT h3_latlng_to_cell") as session:
        session.connection.register("pts", {"lat": lat, "lng": lng, "res": res.astype(np.int32)})
        found = session.query("SELECT h3_latlng_to_cell(lat, lng, res) AS c FROM pts")["c"].to_pylist()
    expected = [h3.str_to_int(h3.latlng_to_cell(a, b, int(r))) for a, b, r in zip(lat, lng, res, strict=True)]
    assert found == expected


def test_functions_work_over_many_batches(store_and_rows) -> None:
    row = run_sql(
        store_and_rows[0].path,
        "SELECT count(*) AS n, count(DISTINCT h3_cell_to_parent(c, 5)) AS parents, "
        "bool_and(h3_from_string(h3_to_string(c)) = c) AS round_trip "
        "FROM (SELECT h3_latlng_to_cell(0.3 + i / 1e6, 32.5 + i / 1e6, 12) AS c FROM range(10000) t(i))",
    ).to_pylist()[0]
    assert row["n"] == 10_000 and row["parents"] >= 1 and row["round_trip"]


def test_plain_sql_loads_no_extension_no_lancedb_and_no_h3(store_and_rows) -> None:
    code = (
        "import sys; from geolink_store.query.sql import SqlSession\n"
        f"with SqlSession({str(store_and_rows[0].path)!r}, prepare_for='SELECT 1') as s:\n"
        '    loaded = s.rows("SELECT count(*) FROM duckdb_functions() WHERE function_name IN "\n'
        "          \"('st_area', 'h3_to_string') OR function_name LIKE '%vector_search'\")[1][0][0]\n"
        "    views = s.rows('SELECT count(*) FROM duckdb_views() WHERE NOT internal')[1][0][0]\n"
        "print(loaded, views, "
        "*(m in sys.modules for m in ('lancedb', 'h3', 'geopandas', 'pyarrow')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "0", "False", "False", "False", "False"]


def test_a_session_without_a_plan_has_everything(store_and_rows) -> None:
    with SqlSession(store_and_rows[0].path) as session:
        names = {row[0] for row in session.rows("SELECT view_name FROM duckdb_views() WHERE NOT internal")[1]}
        assert {"cells", "models"} <= names
        assert (
            session.query("SELECT h3_to_string(h3) AS s FROM cells LIMIT 1")["s"][0].as_py().startswith("89")
        )
        assert np.isfinite(
            session.query("SELECT ST_Area(h3_cell_to_boundary_geometry(h3)) AS a FROM cells")["a"]
        ).all()
