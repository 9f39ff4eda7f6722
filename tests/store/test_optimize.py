"""Store upkeep: ``geolink optimize`` compacts, merges index segments and prunes versions, leaving the data as
it was; ``geolink info`` shows versions, fragments, size and index state; ``patches`` get no index.

Rows are for REAL H3 cells (a res-9 grid around Kampala) with SYNTHETIC clustered vectors
(geolink_store.testing).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner, Result

from geolink_store.cli import main
from geolink_store.errors import InputError
from geolink_store.pipeline.run import INGEST_RETENTION
from geolink_store.store import Store, patches_schema
from geolink_store.store.indexes import build_indexes
from geolink_store.store.locations import size_bytes
from geolink_store.store.upkeep import Retention, parse_duration
from geolink_store.testing import cells_table, h3_grid

CELLS = h3_grid(2000)


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def _store(path: Path, batches: int = 20) -> Store:
    """Cells written as an ingest writes them: one commit (one fragment, one version) per batch."""
    store = Store.create_or_open(path)
    store.upsert("cells", cells_table(CELLS, 16).to_batches(max_chunksize=len(CELLS) // batches))
    return store


def _rows(store: Store) -> pa.Table:
    return store.table("cells").to_arrow().sort_by("h3")


def test_optimize_keeps_the_data_and_shrinks_the_store(tmp_path: Path) -> None:
    store = _store(tmp_path / "db")
    before, size = _rows(store), size_bytes(store.uri)
    assert store.table_info("cells")["versions"] == 20 and store.table_info("cells")["fragments"] == 20
    done = store.optimize()["cells"]
    assert done["before"]["versions"] == 20 and done["after"] == {
        "versions": 1,
        "fragments": 1,
        "index_segments": 0,
        "size_bytes": size_bytes(store.table_uri("cells")),
    }
    assert _rows(store).equals(before) and size_bytes(store.uri) < size


def test_retention_keeps_what_is_asked(tmp_path: Path) -> None:
    store = _store(tmp_path / "db")
    store.optimize(Retention(keep_versions=3))
    assert store.table_info("cells")["versions"] == 3
    store.optimize(Retention(older_than=timedelta(days=1)))  # every version is younger
    assert store.table_info("cells")["versions"] == 3
    store.optimize()
    store.table("cells").delete(f"h3 IN ({', '.join(str(c) for c in CELLS[:10])})")  # a deletion file only
    store.optimize()  # the version before the delete reads the same data file: it costs nothing and stays
    assert store.table_info("cells")["versions"] == 2
    store.restore("cells", store.table("cells").version - 1)
    assert _rows(store).num_rows == 2000


def test_the_optimize_ending_an_ingest_leaves_an_older_reader_its_files(tmp_path: Path) -> None:
    """A search or query still on the version from before it reads on (the default retention would delete
    its files); the fragments are compacted all the same."""
    store = _store(tmp_path / "db")
    reader = Store.open(store.uri).table("cells")
    before = reader.to_arrow().sort_by("h3")
    store.optimize(INGEST_RETENTION)
    assert store.table_info("cells")["fragments"] == 1
    assert reader.to_arrow().sort_by("h3").equals(before)


def test_index_segments_are_merged_and_new_rows_folded_in(tmp_path: Path) -> None:
    store = _store(tmp_path / "db", batches=4)
    store.build_indexes("cells", min_rows=0)
    for start in (2000, 2100):  # each LanceDB optimize appends one more index segment
        store.upsert("cells", cells_table(h3_grid(start + 100)[start:], 16))
        store.table("cells").optimize()
    store.upsert("cells", cells_table(h3_grid(2300)[2200:], 16))
    state = store.table_info("cells")["indexes"]
    assert state["fused_idx"]["segments"] == 3 and state["fused_idx"]["unindexed_rows"] == 100
    before = _rows(store)
    store.optimize()
    info = store.table_info("cells")
    assert info["fragments"] == 1 and info["versions"] == 1
    state = {name: (index["segments"], index["unindexed_rows"]) for name, index in info["indexes"].items()}
    assert state == {name: (1, 0) for name in ("fused_idx", "image_idx", "osm_idx", "h3_idx", "model_id_idx")}
    assert _rows(store).equals(before)


def test_writes_fold_new_rows_in_only_once_they_are_a_quarter_of_the_index(tmp_path: Path) -> None:
    store = _store(tmp_path / "db", batches=1)
    store.build_indexes("cells", min_rows=0)
    store.upsert("cells", cells_table(h3_grid(2200)[2000:], 16), index=False)  # 10 % new
    assert build_indexes(store.table("cells"), "cells", 0, refresh_share=0.25) == []
    store.upsert("cells", cells_table(h3_grid(3000)[2200:], 16), index=False)  # 50 % new
    assert build_indexes(store.table("cells"), "cells", 0, refresh_share=0.25) == ["fused", "image", "osm"]
    assert store.table_info("cells")["indexes"]["fused_idx"] == {
        "columns": ["fused"],
        "type": "IvfHnswSq",
        "segments": 1,
        "unindexed_rows": 0,
    }


def test_patches_get_no_index(tmp_path: Path) -> None:
    store = Store.create_or_open(tmp_path / "db")
    n = 500
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(n * 16, np.float32)), 16)
    patches = pa.table(
        {
            "h3": CELLS[:n],
            "res": pa.array([9] * n, pa.int8()),
            "parent": CELLS[:n],
            "image": vectors,
            "fused": vectors,
            "model_id": ["m"] * n,
            "epoch": ["default"] * n,
        },
        schema=patches_schema(16, 16),
    )
    store.upsert("patches", patches)
    assert store.build_indexes("patches", min_rows=0) == []
    assert store.table_info("patches")["indexes"] == {}


def test_optimize_and_info_commands(tmp_path: Path) -> None:
    db = tmp_path / "db"
    _store(db)
    info = _run("info", "--db", db)
    assert info.exit_code == 0 and "version 20 (20 kept), 20 fragments" in info.stdout
    result = _run("optimize", "--db", db)
    assert result.exit_code == 0, result.stderr
    assert "cells: " in result.stdout and "versions 20 -> 1, fragments 20 -> 1" in result.stdout
    again = json.loads(_run("optimize", "--db", db, "--keep-versions", 2, "--format", "json").stdout)
    assert again["cells"]["after"]["fragments"] == 1
    assert "(1 kept), 1 fragments" in _run("info", "--db", db).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--older-than", "3 fortnights"), "--older-than must be a number and a unit"),
        (("--older-than", "1d", "--keep-versions", 2), "give --keep-versions or --older-than, not both"),
    ],
)
def test_bad_retention_is_one_error_line_and_changes_nothing(
    tmp_path: Path, args: tuple[object, ...], message: str
) -> None:
    db = tmp_path / "db"
    _store(db, batches=2)
    result = _run("optimize", "--db", db, *args)
    assert result.exit_code == 1 and result.stderr.splitlines() == [f"error: {result.stderr[7:].strip()}"]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert Store.open(db).table_info("cells")["versions"] == 2


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90) and parse_duration("1.5d") == timedelta(hours=36)
    assert parse_duration("2w") == timedelta(weeks=2)
    with pytest.raises(InputError):
        parse_duration("1y")
    with pytest.raises(InputError):
        Retention(keep_versions=0)
