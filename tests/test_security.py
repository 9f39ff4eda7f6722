"""Security: nothing unpickles untrusted input, read-only SQL cannot reach the file system or another store
(a corpus of injection attempts through the query and through ``--file`` names), and table names given by a
user cannot escape the store directory."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from geolink_store.cli import main
from geolink_store.errors import GeolinkError
from geolink_store.store.store import Store
from geolink_store.testing import synthetic_store

PACKAGES = [Path(__file__).resolve().parents[1] / name for name in ("geolink_store", "model", "training")]


def _calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]


def test_no_unsafe_deserialisation_in_the_product() -> None:
    """torch.load always with weights_only=True; numpy never with allow_pickle=True; pickle only through the
    restricted unpickler of official example folders."""
    for package in PACKAGES:
        for path in package.rglob("*.py"):
            for call in _calls(path):
                name = ast.unparse(call.func)
                keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
                where = f"{path.name}:{call.lineno}"
                if name == "torch.load":
                    assert keywords.get("weights_only") == "True", where
                if name in ("np.load", "numpy.load"):
                    assert keywords.get("allow_pickle", "False") == "False", where
                assert name not in ("pickle.load", "pickle.loads", "torch.jit.load"), where


def test_table_names_cannot_escape_the_store(tmp_path: Path) -> None:
    store = Store.create_or_open(tmp_path / "db")
    for name in ("../outside", "/etc/passwd", "cells/../../x"):
        with pytest.raises(GeolinkError, match="has no table"):
            store.table(name)
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--db",
            str(tmp_path / "db"),
            "--table",
            "../outside",
            "--out",
            str(tmp_path / "x.parquet"),
        ],
    )
    assert result.exit_code == 1 and not (tmp_path / "outside").exists()


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folders`` with its size and modification time."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The store under attack, another store on the same machine, and a folder for would-be leaks."""
    root = tmp_path_factory.mktemp("attack")
    synthetic_store(root / "db", n=60)
    synthetic_store(root / "other", n=30)
    (root / "loot").mkdir()
    (root / "loot" / "secret.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"s": 1},
                        "geometry": {"type": "Point", "coordinates": [1, 2]},
                    }
                ],
            }
        )
    )
    return root / "db", root / "other", root / "loot"


INJECTIONS = [
    "COPY (SELECT 42) TO '{loot}/leak.csv'",
    "SELECT 1; COPY cells TO '{loot}/cells.parquet' (FORMAT parquet)",
    "EXPORT DATABASE '{loot}/dump'",
    "ATTACH '{loot}/other.duckdb' AS other",
    "ATTACH '{db}' AS s (TYPE LANCE); DELETE FROM s.main.cells",
    "ATTACH 'lance:{db}' AS s",
    "ATTACH '{db}' AS s (TYPE 'LANCE')",
    "USE memory; DETACH catalog",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_parquet('{loot}/*.parquet')",
    "SELECT * FROM read_blob('{db}/cells.lance/_versions/*')",
    "SELECT * FROM ST_Read('{loot}/secret.geojson')",
    "SELECT count(*) FROM '{other}/cells.lance'",
    'SELECT count(*) FROM "{other}/cells.lance"',
    "SELECT count(*) FROM '{other}/CELLS.LANCE/'",
    "SELECT * FROM lance_vector_search('{other}/cells.lance', 'fused', [1.0]::FLOAT[])",
    "SELECT * FROM __lance_compact_files('{db}/cells.lance', '')",
    "SELECT * FROM __lance_truncate_table('{db}', 'main', 'cells')",
    "SELECT * FROM query('SELECT * FROM __lan' || 'ce_truncate_table(''x'', ''y'', ''z'')')",
    "SELECT * FROM query_table('cells')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "CREATE TEMP MACRO m() AS TABLE SELECT * FROM \"QUERY\"('SELECT 1'); SELECT * FROM m()",
    "SELECT * FROM cells_rollup(6, modality := 'fused FROM cells); COPY (SELECT 1) TO ''{loot}/r.csv'' --')",
    "SELECT * FROM cells_rollup('6 AS x FROM cells --')",
    "SELECT 1 /* ; */ ; DELETE FROM cells",
    "SELECT 1; -- comment\nDROP VIEW cells",
    "CREATE TABLE catalog.main.x AS SELECT 1",
    "CREATE OR REPLACE VIEW cells AS SELECT 1 AS h3",
    "INSERT INTO cells SELECT * FROM cells",
    "SELECT 1'; COPY (SELECT 1) TO '{loot}/q.csv'; --",
]


def _assert_one_error(result) -> None:  # noqa: ANN001 (a click Result)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("statement", INJECTIONS)
def test_read_only_sql_resists_injection(stores, statement: str) -> None:
    db, other, loot = stores
    before = _snapshot(db, other, loot)
    sql = statement.format(db=db, other=other, loot=loot)
    _assert_one_error(CliRunner().invoke(main, ["sql", "--db", str(db), sql]))
    assert _snapshot(db, other, loot) == before
    assert Store.open(db).table("cells").count_rows() == 60


@pytest.mark.parametrize(
    "name",
    [
        "z\" AS SELECT 1; COPY (SELECT 1) TO '{loot}/n.csv'; --",
        "z AS SELECT 1; ATTACH '{db}' AS s (TYPE LANCE); DELETE FROM s.main.cells; CREATE TEMP TABLE y",
        "z'",
        "1zones",
        "zo nes",
        "cells",
        "cells_search",
        "catalog",
        "",
    ],
)
def test_file_layer_names_cannot_inject_sql(stores, name: str) -> None:
    db, other, loot = stores
    before = _snapshot(db, other, loot)
    layer = f"{name.format(db=db, loot=loot)}={loot / 'secret.geojson'}"
    _assert_one_error(CliRunner().invoke(main, ["sql", "--db", str(db), "--file", layer, "SELECT 1"]))
    assert _snapshot(db, other, loot) == before


def test_file_layers_with_quotes_in_their_path_still_load(stores, tmp_path: Path) -> None:
    db, _, loot = stores
    path = tmp_path / "it's; a zone.geojson"
    path.write_text((loot / "secret.geojson").read_text())
    result = CliRunner().invoke(
        main, ["sql", "--db", str(db), "--file", f"zones={path}", "--format", "json", "SELECT s FROM zones"]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"s": 1}]


def test_read_only_sql_cannot_write_files(stores) -> None:
    db, _, loot = stores
    for statement in (f"COPY (SELECT 42) TO '{loot / 'leak.csv'}'", "INSTALL httpfs"):
        result = CliRunner().invoke(main, ["sql", "--db", str(db), statement])
        assert result.exit_code == 1 and result.stderr.startswith("error: "), statement
    assert not (loot / "leak.csv").exists()


def test_write_mode_changes_only_the_store(tmp_path: Path) -> None:
    synthetic_store(tmp_path / "db", n=20)
    cell = Store.open(tmp_path / "db").table("cells").to_arrow()["h3"][0].as_py()
    deleted = CliRunner().invoke(
        main,
        ["sql", "--db", str(tmp_path / "db"), "--write", f"DELETE FROM store.main.cells WHERE h3 = {cell}"],
    )
    assert deleted.exit_code == 0, deleted.stderr
    assert Store.open(tmp_path / "db").table("cells").count_rows() == 19
    copied = CliRunner().invoke(
        main, ["sql", "--db", str(tmp_path / "db"), "--write", f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'"]
    )
    _assert_one_error(copied)
    assert not (tmp_path / "x.csv").exists()
