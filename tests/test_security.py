"""Security: nothing unpickles untrusted input, read-only SQL cannot reach the file system, and table names
given by a user cannot escape the store directory."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from click.testing import CliRunner

from geolink_store.cli import main
from geolink_store.errors import GeolinkError
from geolink_store.store.store import Store

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


def test_read_only_sql_cannot_write_files(tmp_path: Path) -> None:
    Store.create_or_open(tmp_path / "db")
    target = tmp_path / "leak.csv"
    for statement in (
        f"COPY (SELECT 42) TO '{target}'",
        f"ATTACH '{tmp_path / 'other.duckdb'}' AS other",
        "INSTALL httpfs",
    ):
        result = CliRunner().invoke(main, ["sql", "--db", str(tmp_path / "db"), statement])
        assert result.exit_code == 1 and result.stderr.startswith("error: "), statement
    assert not target.exists() and not (tmp_path / "other.duckdb").exists()
