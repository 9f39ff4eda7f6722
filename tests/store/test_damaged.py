"""Damaged stores: every command that meets a damaged table says so in one line and points at geolink check.

The damage is real (files of a real LanceDB store deleted, truncated or cut short, see ``damaging.py``). Rows
are for REAL H3 cells (a res-9 grid around Kampala) with SYNTHETIC clustered vectors (geolink_store.testing).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h3
import pytest
from click.testing import CliRunner
from damaging import DAMAGE

from geolink_store.cli import main
from geolink_store.store import Store
from geolink_store.store.damage import DamagedTableError, is_damage
from geolink_store.testing import cells_table, h3_grid, synthetic_store

CELLS = h3_grid(600)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose cells came in two commits (so an older version holds the first 400) and a labels file."""
    db = tmp_path_factory.mktemp("healthy") / "db"
    store, _ = synthetic_store(db, n=400)
    store.upsert("cells", cells_table(CELLS[400:], 16))
    labels = ["h3,label"] + [f"{h3.int_to_str(int(c))},{'a' if i % 2 else 'b'}" for i, c in enumerate(CELLS)]
    (db.parent / "labels.csv").write_text("\n".join(labels) + "\n")
    return db


def _damaged(healthy: Path, tmp_path: Path, damage: Callable[[Path], object]) -> Path:
    db = Path(shutil.copytree(healthy, tmp_path / "db"))
    damage(db / "cells.lance")
    return db


SEARCH_SQL = f"SELECT h3 FROM cells_search('fused', [{', '.join(['0.1'] * 16)}], k := 3)"
COMMANDS = {
    "info": lambda db: ["info", "--db", db],
    "search": lambda db: ["search", "--db", db, "--cell", h3.int_to_str(int(CELLS[3])), "--k", "5"],
    "export": lambda db: ["export", "--db", db, "--table", "cells", "--out", db.parent / "cells.parquet"],
    "heads train": lambda db: ["heads", "train", "--db", db, "--labels", db.parent / "labels.csv"],
    "optimize": lambda db: ["optimize", "--db", db],
    "sql": lambda db: ["sql", "--db", db, "SELECT avg(lon) FROM cells"],
    "sql cells_search": lambda db: ["sql", "--db", db, SEARCH_SQL],
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_on_a_damaged_table_says_so_in_one_line(
    healthy: Path, tmp_path: Path, damage: str, command: str
) -> None:
    db = _damaged(healthy, tmp_path, DAMAGE[damage])
    shutil.copy(healthy.parent / "labels.csv", tmp_path / "labels.csv")
    result = CliRunner().invoke(main, [str(arg) for arg in COMMANDS[command](db)])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [
        f"error: table cells of store {db} is damaged: run geolink check --db {db}"
    ]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("damage", DAMAGE)
def test_writing_into_a_damaged_table_is_refused(healthy: Path, tmp_path: Path, damage: str) -> None:
    db = _damaged(healthy, tmp_path, DAMAGE[damage])
    with pytest.raises(DamagedTableError, match=f"table cells of store {db} is damaged"):
        Store.open(db).upsert("cells", cells_table(h3_grid(700)[600:], 16))


def test_other_errors_are_not_taken_for_damage() -> None:
    assert not is_damage(PermissionError("Permission denied (os error 13)"), "cells")
    assert not is_damage(OSError("No space left on device"), "cells")
    assert not is_damage(ValueError("Invalid user input: no column named foo"), "cells")
    assert not is_damage(RuntimeError("lance error: Not found: s3://bucket/other.lance/x"), "cells")
    assert is_damage(RuntimeError("lance error: Not found: /s/cells.lance/data/x.lance"), "cells")


@pytest.mark.parametrize("damage", DAMAGE)
def test_sql_that_reads_no_damaged_table_runs(healthy: Path, tmp_path: Path, damage: str) -> None:
    """``SELECT 1`` opens no table and a query of ``models`` reads only that one: both answer."""
    db = _damaged(healthy, tmp_path, DAMAGE[damage])
    for query, answer in (("SELECT 1 AS x", "1"), ("SELECT count(*) AS n FROM models", "1")):
        result = CliRunner().invoke(main, ["sql", "--db", str(db), "--format", "csv", query])
        assert result.exit_code == 0 and result.stdout.splitlines()[1] == answer, result.stderr
