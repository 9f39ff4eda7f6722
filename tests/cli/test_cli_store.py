"""The `geolink` commands over a real store: search, sql, info, index, export; errors as one line on stderr.

Rows are for REAL H3 cells (a res-9 grid around Kampala) with SYNTHETIC clustered vectors
(geolink_store.testing).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import geopandas as gpd
import h3
import pytest
from click.testing import CliRunner

from geolink_store.cli import main
from geolink_store.testing import synthetic_store


@pytest.fixture(scope="module")
def store_and_rows(tmp_path_factory: pytest.TempPathFactory):
    return synthetic_store(tmp_path_factory.mktemp("cli") / "db", n=800)


def _run(*args: str):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_search_json_geojson_and_map(store_and_rows, tmp_path: Path) -> None:
    store, rows = store_and_rows
    cell = h3.int_to_str(rows["h3"][10].as_py())
    result = _run(
        "search",
        "--db",
        store.path,
        "--cell",
        cell,
        "--k",
        5,
        "--format",
        "json",
        "--map",
        tmp_path / "map.html",
    )
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert len(found) == 5 and {"h3", "distance", "lon", "lat"} <= set(found[0])
    assert all(isinstance(item["h3"], int) for item in found)
    assert [item["distance"] for item in found] == sorted(item["distance"] for item in found)
    html = (tmp_path / "map.html").read_text()
    assert "#d7191c" in html and found[0]["h3_hex"] in html
    geojson = json.loads(
        _run(
            "search", "--db", store.path, "--cell", rows["h3"][10].as_py(), "--k", 5, "--format", "geojson"
        ).stdout
    )
    assert [f["properties"]["h3"] for f in geojson["features"]] == [item["h3"] for item in found]


def test_sql_json_and_csv(store_and_rows) -> None:
    store, rows = store_and_rows
    result = _run(
        "sql", "--db", store.path, "SELECT h3, fused FROM cells ORDER BY h3 LIMIT 2", "--format", "json"
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data) == 2 and len(data[0]["fused"]) == 16 and isinstance(data[0]["fused"][0], float)
    table = _run(
        "sql", "--db", store.path, "SELECT h3_r7, count(*) AS n FROM cells GROUP BY 1", "--format", "csv"
    )
    assert sum(int(row["n"]) for row in csv.DictReader(io.StringIO(table.stdout))) == rows.num_rows


def test_info_index_and_export(store_and_rows, tmp_path: Path) -> None:
    store, rows = store_and_rows
    info = json.loads(_run("info", "--db", store.path, "--format", "json").stdout)
    assert info["tables"]["cells"]["rows"] == rows.num_rows and info["models"][0]["model_id"] == "test-model"
    assert "cells: 800 rows" in _run("info", "--db", store.path).stdout
    out = tmp_path / "cells.parquet"
    assert _run("export", "--db", store.path, "--table", "cells", "--out", out).exit_code == 0
    frame = gpd.read_parquet(out)
    assert frame.crs.to_epsg() == 4326 and len(frame) == rows.num_rows
    assert frame.geometry.iloc[0].geom_type == "Polygon" and len(frame["fused"].iloc[0]) == 16


@pytest.mark.parametrize(
    "args",
    [
        ("search", "--db", "{missing}", "--cell", "8928308280fffff"),
        ("search", "--db", "{db}", "--cell", "zzz"),
        ("search", "--db", "{db}", "--cell", "8928308280fffff"),
        ("sql", "--db", "{db}", "SELEC 1"),
        ("sql", "--db", "{db}", "SELECT nope FROM cells"),
        ("sql", "--db", "{db}", "DELETE FROM cells"),
        ("export", "--db", "{db}", "--table", "nope", "--out", "{tmp}/x.parquet"),
        ("info", "--db", "{missing}"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(store_and_rows, tmp_path: Path, args) -> None:
    store = store_and_rows[0]
    version = store.table("cells").version
    filled = [a.format(db=store.path, missing=tmp_path / "missing", tmp=tmp_path) for a in args]
    result = _run(*filled)
    assert result.exit_code == 1
    assert result.stdout == "" and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert store.table("cells").version == version
