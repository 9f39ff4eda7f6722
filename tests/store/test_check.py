"""``geolink check`` and ``geolink restore`` on really damaged stores: each problem is one line naming the
table, the version and the way back; following that way gives a whole store again.

Rows are for REAL H3 cells (a res-9 grid around Kampala) with SYNTHETIC clustered vectors
(geolink_store.testing); the damage is real (``damaging.py``).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import lancedb
import pytest
from click.testing import CliRunner, Result
from damaging import DAMAGE, delete_vector_index_files

from geolink_store.cli import main
from geolink_store.store import Store
from geolink_store.store.upkeep import Retention
from geolink_store.testing import cells_table, h3_grid, synthetic_store

CELLS = h3_grid(600)
RESTORE = re.compile(r"restore version (\d+): (geolink restore .*?)(?:, then|$)")


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose cells came in two commits, then got their vector indexes."""
    db = tmp_path_factory.mktemp("healthy") / "db"
    store, _ = synthetic_store(db, n=400)
    store.upsert("cells", cells_table(CELLS[400:], 16))
    store.build_indexes("cells", min_rows=0)
    return db


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def _copy(healthy: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(healthy, tmp_path / "db"))


def _restore_as_told(line: str) -> None:
    """Run the ``geolink restore`` command a problem line names."""
    command = shlex.split(RESTORE.search(line).group(2))
    result = _run(*command[1:])
    assert result.exit_code == 0, result.stderr


def test_a_whole_store_passes(healthy: Path) -> None:
    result = _run("check", "--db", healthy)
    assert result.exit_code == 0 and result.stdout == ""
    assert "2 tables, nothing wrong" in result.stderr


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_is_named_with_the_version_to_restore_and_restoring_it_heals(
    healthy: Path, tmp_path: Path, damage: str
) -> None:
    db = _copy(healthy, tmp_path)
    hit = DAMAGE[damage](db / "cells.lance")
    newest = Store.open(healthy).table("cells").version
    result = _run("check", "--db", db)
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"table cells version {newest}: ") and hit.name in line
    assert f"geolink restore --db {db} --table cells --version" in line
    _restore_as_told(line)
    assert _run("check", "--db", db).exit_code == 0
    rows = Store.open(db).table("cells").count_rows()
    assert rows == (600 if damage == "corrupt manifest" else 400)  # the newest data file held the last 200


def test_missing_index_files_are_named(healthy: Path, tmp_path: Path) -> None:
    db = _copy(healthy, tmp_path)
    delete_vector_index_files(db / "cells.lance")
    result = _run("check", "--db", db)
    lines = result.stdout.splitlines()
    assert result.exit_code == 1 and len(lines) == 3  # image, osm and fused
    segment = re.compile(r"index (image|osm|fused)_idx: segment _indices/\S+ is \d+ bytes")
    assert all(segment.search(line) for line in lines)
    _restore_as_told(lines[0])
    assert _run("check", "--db", db).exit_code == 0
    assert Store.open(db).table("cells").count_rows() == 600


def test_duplicate_keys_are_named(healthy: Path, tmp_path: Path) -> None:
    db = _copy(healthy, tmp_path)
    lancedb.connect(db).open_table("cells").add(cells_table(CELLS[:5], 16))  # a writer bypassing the upsert
    result = _run("check", "--db", db)
    [line] = result.stdout.splitlines()
    assert result.exit_code == 1 and "5 keys (h3, model_id, epoch) are stored more than once" in line
    _restore_as_told(line)
    assert _run("check", "--db", db).exit_code == 0


def test_a_schema_change_is_named(healthy: Path, tmp_path: Path) -> None:
    db = _copy(healthy, tmp_path)
    lancedb.connect(db).open_table("cells").add_columns({"note": "'x'"})
    result = _run("check", "--db", db)
    [line] = result.stdout.splitlines()
    assert result.exit_code == 1 and "columns differ from geolink's cells schema: extra note" in line


def test_no_whole_version_left_says_how_to_rebuild(tmp_path: Path) -> None:
    db = tmp_path / "db"
    store, _ = synthetic_store(db, n=300)
    store.optimize(Retention(keep_versions=1))
    DAMAGE["deleted data file"](db / "cells.lance")
    [line] = _run("check", "--db", db).stdout.splitlines()
    assert line.endswith(
        f"no earlier version is whole: move {db.resolve()}/cells.lance aside, then re-run the ingest "
        "(it encodes the cells the table lacks)"
    )


def test_restore_refuses_unknown_versions_and_tables(healthy: Path, tmp_path: Path) -> None:
    db = _copy(healthy, tmp_path)
    for args, message in (
        (("--table", "cells", "--version", 999), "table cells has no version 999"),
        (("--table", "nope", "--version", 1), "has no table 'nope'"),
    ):
        result = _run("restore", "--db", db, *args)
        assert result.exit_code == 1 and result.stderr.startswith("error: ") and message in result.stderr
        assert len(result.stderr.splitlines()) == 1
