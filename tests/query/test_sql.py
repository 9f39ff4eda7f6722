"""SQL over the store with DuckDB 1.5.5 + offline spatial/lance extensions: views, joins, vector search,
rollups and read-only enforcement.

Rows are for REAL H3 cells (a res-9 grid around Kampala) with SYNTHETIC clustered vectors
(geolink_store.testing).
"""

from __future__ import annotations

import json
from pathlib import Path

import h3
import numpy as np
import pytest
import shapely

from geolink_store.errors import GeolinkError
from geolink_store.query.sql import SqlSession, run_sql
from geolink_store.store.store import Store
from geolink_store.testing import brute_force, synthetic_store


@pytest.fixture(scope="module")
def store_and_rows(tmp_path_factory: pytest.TempPathFactory):
    return synthetic_store(tmp_path_factory.mktemp("sql") / "db", n=1500)


def test_count_by_parent_matches_the_rows(store_and_rows) -> None:
    store, rows = store_and_rows
    result = run_sql(store.path, "SELECT h3_r7, count(*) AS n FROM cells GROUP BY h3_r7 ORDER BY h3_r7")
    parents, counts = np.unique(rows["h3_r7"].to_numpy(), return_counts=True)
    assert result["h3_r7"].to_pylist() == parents.tolist() and result["n"].to_pylist() == counts.tolist()


def test_geometry_is_geometry_and_joins_a_user_geojson(store_and_rows, tmp_path: Path) -> None:
    store, rows = store_and_rows
    lon, lat = rows["lon"].to_numpy(), rows["lat"].to_numpy()
    zone = shapely.box(
        np.quantile(lon, 0.2), np.quantile(lat, 0.2), np.quantile(lon, 0.5), np.quantile(lat, 0.5)
    )
    path = tmp_path / "zones.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"name": "A"},
                        "geometry": shapely.geometry.mapping(zone),
                    }
                ],
            }
        )
    )
    sql = (
        "SELECT z.name, count(*) AS n FROM cells c JOIN zones z ON ST_Intersects(c.geometry, z.geom) "
        "GROUP BY z.name"
    )
    result = run_sql(store.path, sql, files={"zones": path})
    hexagons = shapely.from_wkb(rows["geometry"].to_numpy(zero_copy_only=False))
    assert result.to_pylist() == [{"name": "A", "n": int(shapely.intersects(hexagons, zone).sum())}]
    typed = run_sql(
        store.path, "SELECT typeof(geometry) AS t, ST_AsText(ST_Centroid(geometry)) AS c FROM cells LIMIT 1"
    )
    assert typed["t"][0].as_py() == "GEOMETRY" and typed["c"][0].as_py().startswith("POINT")


def test_vector_search_in_sql_prefilters_before_top_k(store_and_rows) -> None:
    store, rows = store_and_rows
    cell = rows["h3"][3].as_py()
    parent = rows["h3_r7"][1400].as_py()
    sql = (
        f"SET VARIABLE q = (SELECT fused FROM cells WHERE h3 = {cell}); "
        f"SELECT h3, _distance FROM cells_search('fused', getvariable('q'), k := 10) "
        f"WHERE h3_r7 = {parent} ORDER BY _distance"
    )
    result = run_sql(store.path, sql)
    keep = rows["h3_r7"].to_numpy() == parent
    query = np.asarray(rows["fused"][3].as_py(), dtype=np.float32)
    distances = brute_force(rows, query)
    expected = rows["h3"].to_numpy()[np.flatnonzero(keep)[np.argsort(distances[keep])[:10]]]
    assert len(result) == 10 and set(result["h3"].to_pylist()) == set(expected.tolist())


def test_rollup_is_the_mean_vector_per_parent(store_and_rows) -> None:
    store, rows = store_and_rows
    result = run_sql(store.path, "SELECT * FROM cells_rollup(6, modality := 'image') ORDER BY h3_r6")
    parents = rows["h3_r6"].to_numpy()
    vectors = np.stack(rows["image"].to_numpy(zero_copy_only=False))
    for row in result.to_pylist():
        members = parents == row["h3_r6"]
        assert row["n"] == members.sum()
        assert np.allclose(row["image"], vectors[members].mean(axis=0), atol=1e-6)
    assert sum(result["n"].to_pylist()) == rows.num_rows


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM cells",
        "DROP VIEW cells",
        "CREATE TABLE cells2 AS SELECT * FROM cells",
        "COPY (SELECT h3 FROM cells) TO '{db}/cells.csv'",
    ],
)
def test_read_only_unless_write(store_and_rows, statement: str) -> None:
    store = store_and_rows[0]
    version = store.table("cells").version
    before = sorted(p.name for p in store.path.rglob("*"))
    with pytest.raises(GeolinkError):
        run_sql(store.path, statement.format(db=store.path))
    assert store.table("cells").version == version and sorted(p.name for p in store.path.rglob("*")) == before


def test_write_mode_deletes_through_the_lance_extension(tmp_path: Path) -> None:
    store, rows = synthetic_store(tmp_path / "db", n=50)
    cell = rows["h3"][0].as_py()
    run_sql(store.path, f"DELETE FROM store.main.cells WHERE h3 = {cell}", write=True)
    assert Store.open(store.path).table("cells").count_rows() == 49
    assert cell not in Store.open(store.path).existing_cells("test-model")


def test_bad_sql_is_one_clear_error(store_and_rows) -> None:
    with pytest.raises(GeolinkError, match="nope"):
        run_sql(store_and_rows[0].path, "SELECT nope FROM cells")
    with pytest.raises(GeolinkError, match="cellz"):
        run_sql(store_and_rows[0].path, "SELECT * FROM cellz")
    with SqlSession(store_and_rows[0].path) as session:
        assert session.query("SELECT count(*) AS n FROM models")["n"][0].as_py() == 1
        assert h3.is_valid_cell(h3.int_to_str(session.query("SELECT h3 FROM cells LIMIT 1")["h3"][0].as_py()))


def test_a_prepared_session_sets_up_only_what_the_sql_names(store_and_rows) -> None:
    path = store_and_rows[0].path
    views = "SELECT list(view_name ORDER BY view_name) AS v FROM duckdb_views() WHERE NOT internal"
    with SqlSession(path, prepare_for="SELECT count(*) FROM models") as session:
        assert session.query(views)["v"][0].as_py() == ["models"]
        with pytest.raises(GeolinkError, match="st_area"):  # spatial was not needed, so not loaded
            session.query("SELECT ST_Area(NULL)")
    assert run_sql(path, "SHOW TABLES")["name"].to_pylist() == ["cells", "models"]
    assert run_sql(path, "SELECT count(*) AS n FROM cells_rollup(6)")["n"][0].as_py() > 0


def test_file_layer_names_are_plain_sql_names(store_and_rows, tmp_path: Path) -> None:
    path = tmp_path / "z.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}')
    for name in ('z"; DROP VIEW cells; --', "cells", "9z", "a b"):
        with pytest.raises(GeolinkError, match="plain SQL name"):
            run_sql(store_and_rows[0].path, "SELECT 1", files={name: path})
