"""Faults and concurrency on real stores: SIGKILL at many random moments (ingest, index build, head training),
readers querying while a writer ingests, and `geolink` as a real process meeting the machine's own faults (a
store it may not write, a full disk, an unreachable object store), Ctrl-C, a closed pipe and third-party
warnings.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from geolink_store.heads.from_store import list_heads, train_from_store
from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.query.search import search
from geolink_store.query.sql import run_sql
from geolink_store.sample import kampala_sample
from geolink_store.store import Store
from geolink_store.store.schema import TABLE_KEYS

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


# ---- geolink as a real process: faults of the machine, Ctrl-C, a closed pipe, warnings ----

GEOLINK = str(Path(sys.executable).with_name("geolink"))
INTERRUPT_S = 2.0
"""Ctrl-C must end any command within this many seconds."""


def _geolink(
    *args: object, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, GEOLINK, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=(os.environ | env) if env else None,
    )


def _one_error_line(done: subprocess.CompletedProcess, *contains: str, code: int = 1) -> str:
    """Exit ``code``, no traceback, and one non-empty stderr line: ``error: ...`` holding ``contains``."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == code and "Traceback" not in done.stderr, (done.returncode, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for text in contains:
        assert text.lower() in lines[0].lower(), lines[0]
    return lines[0]


def _content(db: Path) -> dict[str, pa.Table]:
    """Every table's rows, sorted by key: equal iff the store's data is."""
    store = Store.open(db)
    return {
        name: store.table(name).to_arrow().sort_by([(key, "ascending") for key in TABLE_KEYS[name]])
        for name in store.table_names()
    }


def _labels(db: Path, path: Path) -> Path:
    cells = _keys(db, "cells")
    pd.DataFrame({"h3": [f"{c:x}" for c in cells], "label": ["a", "b"] * (len(cells) // 2)}).to_csv(
        path, index=False
    )
    return path


@pytest.fixture
def read_only_store(sample_store: Path, tmp_path: Path) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """A copy of the sample store that no one may write to, and the command prefix that makes it so for root
    too (root ignores permission bits unless it drops CAP_DAC_OVERRIDE)."""
    db = Path(shutil.copytree(sample_store, tmp_path / "read-only"))
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv cannot drop its permission override")
        caps = "-dac_override,-dac_read_search"
        prefix = ("setpriv", "--bounding-set", caps, "--inh-caps", caps)
    for path in [db, *db.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    yield db, prefix
    for path in [db, *db.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


def test_store_without_write_permission(
    read_only_store: tuple[Path, tuple[str, ...]], tmp_path: Path
) -> None:
    """Training a head into it and ingesting into it: one line naming the store; its data unchanged."""
    db, prefix = read_only_store
    before = _content(db)
    labels = _labels(db, tmp_path / "labels.csv")
    trained = _geolink("heads", "train", "--db", db, "--labels", labels, "--split", "random", prefix=prefix)
    _one_error_line(trained, str(db), "permission denied")
    ingested = _geolink(
        "ingest", "--db", db, "--region", SAMPLE.region, "--imagery", SAMPLE.imagery, "--osm", SAMPLE.osm,
        "--res", SAMPLE.res, prefix=prefix,
    )  # fmt: skip
    _one_error_line(ingested, f"cannot write to store {db}")
    after = _content(db)
    assert after.keys() == before.keys() and all(after[name].equals(before[name]) for name in before)


@pytest.fixture
def full_disk(sample_store: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the sample store on a tmpfs left with 16 KiB free (a real ENOSPC on the next writes)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mount]).returncode
    ):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        db = Path(shutil.copytree(sample_store, mount / "db"))
        stat = os.statvfs(mount)
        used_kib = (stat.f_blocks - stat.f_bfree) * stat.f_frsize // 1024
        subprocess.run(["mount", "-o", f"remount,size={used_kib + 16}k", mount], check=True)
        yield db
    finally:
        subprocess.run(["umount", "-l", mount], check=False)


def test_disk_full_is_one_line_and_the_store_stays_whole(full_disk: Path, tmp_path: Path) -> None:
    """A k-NN head (~70 KB of vectors) does not fit: one line naming the store and the full disk; the store
    opens with exactly its tables and rows (the heads table is created with its first rows, so not at all)."""
    before = _content(full_disk)
    labels = _labels(full_disk, tmp_path / "labels.csv")
    done = _geolink(
        "heads", "train", "--db", full_disk, "--labels", labels, "--kind", "knn", "--split", "random"
    )
    _one_error_line(done, str(full_disk), "no space left on device")
    after = _content(full_disk)
    assert after.keys() == before.keys() and all(after[name].equals(before[name]) for name in before)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (("info",), "connection refused"),
        (("heads", "list"), "connection refused"),
        (("search", "--lonlat", "32.59,0.35"), "cannot connect"),  # via pylance: its error gives no errno
    ],
)
def test_unreachable_object_store_is_one_line(command: tuple[str, ...], reason: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    group, rest = (command[:2], command[2:]) if command[0] == "heads" else (command[:1], command[1:])
    done = _geolink(*group, "--db", "s3://geolink-test/store", *rest, env=env)
    _one_error_line(done, "store s3://geolink-test/store", reason)


def _interrupt_after(
    args: list[str], ready: float, once: Path | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    """Run geolink, press Ctrl-C after ``ready`` seconds (or, given ``once``, as soon as that path exists,
    within ``ready`` seconds); the result and the seconds it took to end then."""
    worker = subprocess.Popen(
        [GEOLINK, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(
            signal.SIGINT, signal.SIG_DFL
        ),  # even when the tests run in background
    )
    deadline = time.monotonic() + ready
    while time.monotonic() < deadline and (once is None or not once.exists()) and worker.poll() is None:
        time.sleep(0.02)
    assert worker.poll() is None, "the command ended before Ctrl-C"
    pressed = time.perf_counter()
    worker.send_signal(signal.SIGINT)
    _, stderr = worker.communicate(timeout=60)
    return subprocess.CompletedProcess(args, worker.returncode, "", stderr), time.perf_counter() - pressed


def test_ctrl_c_stops_a_long_native_sql_query(sample_store: Path) -> None:
    """Inside DuckDB (native code, no Python running): one line, exit 130, within INTERRUPT_S."""
    joins = ", ".join(f"cells c{i}" for i in range(7))
    query = f"SELECT count(*) FROM {joins} WHERE c0.n_point + c1.n_point + c6.n_point = 3"
    done, seconds = _interrupt_after(["sql", "--db", str(sample_store), query], ready=6.0)
    assert _one_error_line(done, code=130) == "error: interrupted"
    assert seconds < INTERRUPT_S, seconds


def test_ctrl_c_stops_an_ingest_and_the_store_stays_whole(tmp_path: Path) -> None:
    db = tmp_path / "db"
    args = ["ingest", "--db", str(db), "--region", SAMPLE.region, "--imagery", str(SAMPLE.imagery)]
    args += ["--osm", str(SAMPLE.osm), "--res", str(SAMPLE.res), "--batch-size", "4"]
    done, seconds = _interrupt_after(args, ready=120.0, once=db / "cells.lance")  # mid-ingest
    assert _one_error_line(done, code=130) == "error: interrupted"
    assert seconds < INTERRUPT_S, seconds
    if db.exists() and "cells" in Store.open(db).table_names():
        for table in ("cells", "patches"):
            keys = _keys(db, table)
            assert len(keys) == len(set(keys)), f"duplicate {table} rows after Ctrl-C"


def test_a_closed_pipe_ends_quietly(sample_store: Path) -> None:
    """`geolink sql ... | head -c 100`: the reader stops early; geolink says nothing."""
    reader = subprocess.Popen(
        [GEOLINK, "sql", "--db", str(sample_store), "--format", "json", "SELECT * FROM patches"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert len(reader.stdout.read(100)) == 100
    reader.stdout.close()
    stderr = reader.stderr.read().decode()
    reader.wait(timeout=120)
    assert stderr == "", stderr


def test_an_ingest_prints_no_third_party_warning(tmp_path: Path) -> None:
    from geolink_store.grid import region_cells

    region = ",".join(f"{c:x}" for c in region_cells(SAMPLE.region, SAMPLE.res)[30:33])
    args = ["--region", region, "--imagery", SAMPLE.imagery, "--osm", SAMPLE.osm, "--res", SAMPLE.res]
    done = _geolink("ingest", "--db", tmp_path / "db", *args, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert json.loads(done.stdout)["cells_encoded"] == 3


def test_only_the_known_warnings_are_hidden() -> None:
    from geolink_store.cli.noise import ignore_known_warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ignore_known_warnings()
        warnings.warn("`torch.jit.script` is deprecated", FutureWarning, stacklevel=1)  # not from torch.jit
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == [
        "`torch.jit.script` is deprecated",
        "something else is deprecated",
    ]
