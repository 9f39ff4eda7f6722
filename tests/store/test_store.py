"""The LanceDB store: schema helpers, idempotent atomic upserts, resume after SIGKILL, concurrent reads.

Rows are for REAL H3 cells (a res-9 grid around Kampala) with SYNTHETIC clustered vectors
(geolink_store.testing).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h3
import numpy as np
import pyarrow as pa
import pytest

from geolink_store.errors import GeolinkError
from geolink_store.store import INDEX_MIN_ROWS, Store, cells_schema, parent_resolutions, patches_schema
from geolink_store.testing import cells_table, h3_grid, synthetic_store

TESTS = Path(__file__).resolve().parent


def test_cells_schema_has_every_parent_column_and_fixed_width_vectors() -> None:
    schema = cells_schema(768, 128, 256, res=9)
    assert [name for name in schema.names if name.startswith("h3_r")] == [f"h3_r{k}" for k in range(9)]
    assert list(parent_resolutions(9)) == list(range(9))
    assert schema.field("image").type == pa.list_(pa.float32(), 768)
    assert schema.field("osm").nullable and schema.field("fused").nullable and not schema.field("h3").nullable
    assert schema.field("h3").type == pa.int64()
    assert patches_schema(768, 256).field("parent").type == pa.int64()


def test_synthetic_rows_carry_true_h3_parents(tmp_path: Path) -> None:
    table = cells_table(h3_grid(50), 8)
    cell = h3.int_to_str(table["h3"][7].as_py())
    assert table["h3_r6"][7].as_py() == h3.str_to_int(h3.cell_to_parent(cell, 6))
    lat, lon = h3.cell_to_latlng(cell)
    assert table["lon"][7].as_py() == pytest.approx(lon) and table["lat"][7].as_py() == pytest.approx(lat)


def test_open_missing_store_fails(tmp_path: Path) -> None:
    with pytest.raises(GeolinkError, match="does not exist"):
        Store.open(tmp_path / "nowhere")


def test_upsert_is_idempotent_and_replaces(tmp_path: Path) -> None:
    store, table = synthetic_store(tmp_path / "db", n=500)
    again = store.upsert("cells", table)
    assert (again.inserted, again.updated) == (0, 500)
    assert store.table("cells").count_rows() == 500
    changed = table.slice(0, 10).set_column(
        table.schema.get_field_index("source"), "source", pa.array(["new"] * 10)
    )
    result = store.upsert("cells", changed)
    assert (result.inserted, result.updated, result.commits) == (0, 10, 1)
    stored = store.table("cells").search().where("source = 'new'").limit(None).to_arrow()
    assert sorted(stored["h3"].to_pylist()) == sorted(changed["h3"].to_pylist())
    assert store.table("cells").count_rows() == 500
    assert np.array_equal(store.existing_cells("test-model"), np.sort(table["h3"].to_numpy()))
    assert store.existing_cells("other-model").size == 0


def test_same_cells_of_another_model_are_kept_apart(tmp_path: Path) -> None:
    store, table = synthetic_store(tmp_path / "db", n=200)
    other = table.set_column(table.schema.get_field_index("model_id"), "model_id", pa.array(["m2"] * 200))
    store.upsert("cells", other)
    assert store.table("cells").count_rows() == 400
    assert store.model_ids() == ["m2", "test-model"]
    with pytest.raises(GeolinkError, match="several models"):
        store.default_model()


def test_width_mismatch_names_both_widths_and_leaves_store_unchanged(tmp_path: Path) -> None:
    store, _ = synthetic_store(tmp_path / "db", n=100, dim=16)
    version = store.table("cells").version
    wider = cells_table(h3_grid(120)[100:], 32)
    with pytest.raises(GeolinkError, match=r"width 16 in the store but the new rows have width 32"):
        store.upsert("cells", wider)
    with pytest.raises(GeolinkError, match="lack column 'source'"):
        store.upsert("cells", cells_table(h3_grid(120)[100:], 16).drop_columns(["source"]))
    assert store.table("cells").version == version and store.table("cells").count_rows() == 100


def test_models_table_and_info(tmp_path: Path) -> None:
    store, _ = synthetic_store(tmp_path / "db", n=100)
    before = store.table("models").version
    store.register_model(  # a model is recorded once: registering it again (a resumed ingest) changes nothing
        "test-model", name="renamed", architecture="none", config={"dim": 16}, text_encoder="none"
    )
    assert [(m["model_id"], m["name"], m["config"]) for m in store.models()] == [
        ("test-model", "synthetic", {"dim": 16})
    ]
    assert store.table("models").version == before
    info = Store.open(tmp_path / "db").info()
    assert info["tables"]["cells"]["rows"] == 100
    assert info["tables"]["cells"]["vectors"] == {"image": 16, "osm": 16, "fused": 16}
    assert info["tables"]["cells"]["search"] == "exact" and info["size_bytes"] > 0
    assert store.build_indexes() == []  # below INDEX_MIN_ROWS
    assert INDEX_MIN_ROWS > 100


def _rows(store: Store) -> pa.Table:
    return store.table("cells").to_arrow().select(["h3", "model_id", "fused"]).sort_by("h3")


def test_sigkill_mid_write_then_rerun_gives_the_uninterrupted_rows(tmp_path: Path) -> None:
    """A writer killed at a random moment leaves whole batches; a resumed rerun ends like a clean run."""
    script = [sys.executable, str(TESTS / "store_writer.py")]
    subprocess.run([*script, str(tmp_path / "clean")], check=True, capture_output=True)
    expected = _rows(Store.open(tmp_path / "clean"))

    killed = tmp_path / "killed"
    writer = subprocess.Popen(
        [*script, str(killed)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert writer.stdout.readline().startswith("batch")  # at least one commit landed
    time.sleep(np.random.default_rng().uniform(0.0, 0.5))
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    partial = Store.open(killed).table("cells").count_rows()
    assert partial % 100 == 0 and 0 < partial <= expected.num_rows  # only whole batches

    subprocess.run([*script, str(killed)], check=True, capture_output=True)
    assert _rows(Store.open(killed)).equals(expected)


def test_reader_sees_whole_batches_while_a_writer_upserts(tmp_path: Path) -> None:
    store, _ = synthetic_store(tmp_path / "db", n=100)
    more = cells_table(h3_grid(1100)[100:], 16)
    writer = threading.Thread(
        target=lambda: Store.open(tmp_path / "db").upsert("cells", more.to_batches(100))
    )
    seen = []
    writer.start()
    reader = Store.open(tmp_path / "db")
    while writer.is_alive():
        seen.append(reader.table("cells").count_rows())
    writer.join()
    seen.append(reader.table("cells").count_rows())
    assert all(count % 100 == 0 for count in seen)
    assert seen == sorted(seen) and seen[-1] == 1100
