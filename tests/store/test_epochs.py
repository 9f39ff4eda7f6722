"""Epochs: labelled snapshots of the same cells, and stores of the release before them (a bundled fixture)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geolink_store.cli.main import main
from geolink_store.errors import InputError, StoreError
from geolink_store.query.search import search
from geolink_store.query.sql import run_sql
from geolink_store.store import Store
from geolink_store.store.epochs import checked_label, sort_key
from geolink_store.testing import cells_table, h3_grid

OLD_STORE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v0"


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    return Path(shutil.copytree(OLD_STORE, tmp_path / "old"))


def test_a_store_of_before_epochs_reads_as_the_default_epoch(old_store: Path) -> None:
    store = Store.open(old_store)
    assert "epoch" not in store.table("cells").schema.names
    assert store.epochs() == ["default"]
    assert store.default_epoch() == "default"
    assert store.existing_cells("test-model").size == 60
    assert store.existing_cells("test-model", epoch="2020").size == 0
    hits = search(store, cells=int(store.existing_cells("test-model")[0]), k=5, epoch="default")
    assert len(hits) == 5
    assert run_sql(old_store, "SELECT DISTINCT epoch FROM cells")["epoch"].to_pylist() == ["default"]
    assert (
        run_sql(old_store, "SELECT count(*) AS n FROM predictions WHERE epoch = 'default'")["n"][0].as_py()
        == 3
    )
    assert store.check() == []
    with pytest.raises(StoreError, match="no epoch '2020'"):
        store.default_epoch("2020")
    assert not any(p.name.endswith(".manifest") and p.stat().st_size == 0 for p in old_store.rglob("*"))


def test_reading_an_old_store_changes_nothing(old_store: Path) -> None:
    before = sorted(str(p.relative_to(old_store)) for p in old_store.rglob("*"))
    result = CliRunner().invoke(main, ["info", "--db", str(old_store), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tables"]["cells"]["epochs"] == ["default"]
    CliRunner().invoke(main, ["sql", "--db", str(old_store), "SELECT count(*) FROM cells"])
    assert sorted(str(p.relative_to(old_store)) for p in old_store.rglob("*")) == before


def test_the_first_write_of_a_new_epoch_upgrades_the_old_table(old_store: Path) -> None:
    store = Store.open(old_store)
    cells = store.existing_cells("test-model")
    store.upsert("cells", cells_table(cells[:20], 8, epoch="2021"), index=False)
    table = store.table("cells")
    assert {"epoch", "acquired"} <= set(table.schema.names)
    assert store.epochs() == ["default", "2021"]
    assert store.default_epoch() == "2021"  # the latest
    assert store.existing_cells("test-model", epoch="default").size == 60
    assert store.existing_cells("test-model", epoch="2021").size == 20
    assert table.count_rows() == 80
    assert store.check() == []
    counts = run_sql(old_store, "SELECT epoch, count(*) AS n FROM cells GROUP BY 1 ORDER BY 1").to_pylist()
    assert counts == [{"epoch": "2021", "n": 20}, {"epoch": "default", "n": 60}]
    only = run_sql(old_store, "SELECT count(*) AS n FROM cells", epoch="2021")
    assert only["n"][0].as_py() == 20


def test_two_epochs_of_the_same_cells_are_two_rows_each_and_rewrites_replace(tmp_path: Path) -> None:
    store = Store.create_or_open(tmp_path / "db")
    cells = h3_grid(40, 9)
    store.upsert("cells", cells_table(cells, 8, epoch="2010"), index=False)
    store.upsert("cells", cells_table(cells, 8, epoch="2020", seed=5), index=False)
    again = store.upsert("cells", cells_table(cells[:10], 8, epoch="2020", seed=6), index=False)
    assert (again.inserted, again.updated) == (0, 10)
    assert store.table("cells").count_rows() == 80
    assert store.epochs() == ["2010", "2020"]
    first = search(store, cells=int(cells[0]), k=3, epoch="2010")
    second = search(store, cells=int(cells[0]), k=3, epoch="2020")
    assert not np.array_equal(first["h3"].to_numpy(), second["h3"].to_numpy()) or not np.allclose(
        first["distance"], second["distance"]
    )


@pytest.mark.parametrize("label", ["", " 2020", "2020'; DROP", "a" * 65, "-x", "2020/06"])
def test_bad_epoch_labels_are_refused(label: str) -> None:
    with pytest.raises(InputError, match="not an epoch label"):
        checked_label(label)


def test_epochs_sort_in_time_with_the_default_first() -> None:
    assert sorted(["2020-06", "default", "2010", "2020"], key=sort_key) == [
        "default",
        "2010",
        "2020",
        "2020-06",
    ]
