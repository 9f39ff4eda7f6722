"""Faults and concurrency on real stores: SIGKILL at many random moments (ingest, index build, head training),
and readers querying while a writer ingests.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from geolink_store.heads.from_store import list_heads, train_from_store
from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.query.search import search
from geolink_store.query.sql import run_sql
from geolink_store.sample import kampala_sample
from geolink_store.store import Store

SAMPLE = kampala_sample()
INGEST = """
import sys
from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.sample import kampala_sample
s = kampala_sample()
ingest(sys.argv[1], s.region, [str(s.imagery)], str(s.osm),
       settings=IngestSettings(res=s.res, fine_res=s.fine_res, batch_size=4))
"""


def _kill_after(code: str, args: list[str], delay: float) -> None:
    worker = subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if worker.poll() is None:
        os.kill(worker.pid, signal.SIGKILL)
    worker.wait()


def _keys(db: Path, table: str) -> list[int]:
    return Store.open(db).table(table).to_arrow()["h3"].to_pylist()


def test_ingest_survives_20_random_sigkills(sample_store: Path, tmp_path: Path) -> None:
    """Kill the same ingest 20 times at random moments; after each the store opens without duplicate keys; the
    final rerun ends with exactly the rows of an uninterrupted run."""
    db = tmp_path / "db"
    rng = random.Random(20261128)
    for _ in range(20):
        _kill_after(INGEST, [str(db)], rng.uniform(2.0, 6.0))
        if db.exists() and "cells" in Store.open(db).table_names():
            for table in ("cells", "patches"):
                keys = _keys(db, table)
                assert len(keys) == len(set(keys)), f"duplicate {table} rows after a kill"
    ingest(
        str(db),
        SAMPLE.region,
        [str(SAMPLE.imagery)],
        str(SAMPLE.osm),
        settings=IngestSettings(res=SAMPLE.res, fine_res=SAMPLE.fine_res),
    )
    for table in ("cells", "patches"):
        assert sorted(_keys(db, table)) == sorted(_keys(sample_store, table))


INDEX = """
import sys
from geolink_store.store import Store
Store.open(sys.argv[1]).build_indexes("cells", min_rows=0)
"""


def test_index_build_survives_20_random_sigkills(tmp_path: Path) -> None:
    from geolink_store.testing import synthetic_store

    _, table = synthetic_store(tmp_path / "db", n=20_000, dim=64)
    rng = random.Random(7)
    for _ in range(20):
        _kill_after(INDEX, [str(tmp_path / "db")], rng.uniform(1.5, 3.5))
        reopened = Store.open(tmp_path / "db")
        assert reopened.table("cells").count_rows() == table.num_rows
        query = table["h3"][0].as_py()
        assert len(search(reopened, cells=query, k=5)) == 5
    final = Store.open(tmp_path / "db")
    final.build_indexes("cells", min_rows=0)
    indexed = {column for index in final.table("cells").list_indices() for column in index.columns}
    assert indexed >= {"image", "fused", "osm", "h3", "model_id"}
    assert all(v["unindexed_rows"] == 0 for v in final.info()["tables"]["cells"]["indexes"].values())


HEAD = """
import sys
from geolink_store.heads.from_store import train_from_store
from geolink_store.store import Store
train_from_store(Store.open(sys.argv[1]), sys.argv[2], "label", kind="mlp", split="random")
"""


def test_head_training_survives_20_random_sigkills(sample_store_copy: Path, tmp_path: Path) -> None:
    cells = _keys(sample_store_copy, "cells")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"h3": [f"{c:x}" for c in cells], "label": ["a", "b"] * (len(cells) // 2)}).to_csv(
        labels, index=False
    )
    rng = random.Random(3)
    for _ in range(20):
        _kill_after(HEAD, [str(sample_store_copy), str(labels)], rng.uniform(2.0, 5.0))
        heads = list_heads(Store.open(sample_store_copy))
        assert len({h["head_id"] for h in heads}) == len(heads)
    trained = train_from_store(Store.open(sample_store_copy), labels, "label", kind="mlp", split="random")
    assert trained.head_id in [h["head_id"] for h in list_heads(Store.open(sample_store_copy))]


def test_four_readers_while_one_writer_ingests(tmp_path: Path) -> None:
    """Readers search and run SQL throughout an ingest: no errors, and every read sees a consistent version (a
    batch's patches are committed before its cells, so no cell is ever visible without its patches)."""
    db = tmp_path / "db"
    ingest(
        str(db),
        SAMPLE.region,
        [str(SAMPLE.imagery)],
        str(SAMPLE.osm),
        settings=IngestSettings(res=SAMPLE.res, fine_res=SAMPLE.fine_res, batch_size=8),
    )
    first = _keys(db, "cells")[0]
    writer = subprocess.Popen(
        [sys.executable, "-c", INGEST.replace("batch_size=4", "batch_size=4, overwrite=True"), str(db)],
        stderr=subprocess.DEVNULL,
    )
    errors: list[BaseException] = []
    reads = [0]

    def reader(index: int) -> None:
        while writer.poll() is None:
            try:
                if index % 2:
                    assert len(search(Store.open(db), cells=first, k=5)) == 5
                else:
                    row = run_sql(
                        db,
                        "SELECT (SELECT count(*) FROM cells) AS cells, (SELECT count(DISTINCT h3) "
                        "FROM cells) AS distinct_cells, (SELECT count(*) FROM cells WHERE h3 NOT IN "
                        "(SELECT parent FROM patches)) AS without_patches",
                    ).to_pylist()[0]
                    assert row["cells"] == row["distinct_cells"] == 72 and row["without_patches"] == 0
                reads[0] += 1
                time.sleep(0.2)  # leave the writer some of the 2 cores
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
                return

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    writer.wait(timeout=300)
    for thread in threads:
        thread.join()
    assert writer.returncode == 0
    assert not errors, errors[0]
    assert reads[0] >= 8
    assert np.unique(_keys(db, "cells")).size == 72
