"""``--engine ray`` on a real local Ray cluster (a head node with 2 worker CPUs, started with ``ray start`` as
a user would): same rows as the local engine, a journal that survives SIGKILL, one commit per table that
replaces stale rows, and one clean error line for bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from geolink_store.cli import main
from geolink_store.pipeline import IngestSettings, RayEngine, ingest
from geolink_store.sample import kampala_sample
from geolink_store.store import Store

ray = pytest.importorskip("ray", reason="the Ray engine's tests need `pip install geolink-store[ray]`")
pytest.importorskip("lance", reason="the Ray engine's tests need pylance (`pip install geolink-store[ray]`)")

SAMPLE = kampala_sample()
SETTINGS = IngestSettings(res=SAMPLE.res, fine_res=SAMPLE.fine_res, batch_size=8, partition_levels=1)
ARGS = (SAMPLE.region, [str(SAMPLE.imagery)], str(SAMPLE.osm))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> str:
    """A local Ray cluster with 2 CPUs, its address; stopped afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tmp_path_factory.mktemp("ray")
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--num-cpus=2",
        "--num-gpus=0",
        f"--port={port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    yield f"127.0.0.1:{port}"
    subprocess.run(
        [str(Path(sys.executable).parent / "ray"), "stop", "--force"],
        capture_output=True,
        timeout=120,
        check=False,
    )


def _ray_ingest(db: Path, cluster: str, **changes) -> object:
    settings = IngestSettings(**{**SETTINGS.__dict__, **changes})
    return ingest(str(db), *ARGS, settings=settings, engine=RayEngine(workers=2, address=cluster))


def _sorted(db: Path, table: str) -> pa.Table:
    data = Store.open(db).table(table).to_arrow()
    return data.drop_columns([c for c in ("created_at",) if c in data.column_names]).sort_by("h3")


def assert_same_rows(db: Path, expected: Path) -> None:
    """Same keys and plain columns in both stores; vectors equal to float tolerance."""
    for table in ("cells", "patches"):
        got, want = _sorted(db, table), _sorted(expected, table)
        assert got.num_rows == want.num_rows
        for name in want.column_names:
            if pa.types.is_fixed_size_list(want.schema.field(name).type):
                assert got[name].null_count == want[name].null_count
                mask = np.asarray(want[name].is_valid())
                a = np.stack(got[name].filter(mask).to_numpy(zero_copy_only=False))
                b = np.stack(want[name].filter(mask).to_numpy(zero_copy_only=False))
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
            else:
                assert got[name].equals(want[name]), f"{table}.{name} differs"
    assert len(Store.open(db).models()) == 1


def test_two_workers_write_the_rows_of_the_local_engine(
    cluster: str, sample_store: Path, tmp_path: Path
) -> None:
    db = tmp_path / "db"
    report = _ray_ingest(db, cluster)
    local = Store.open(sample_store)
    assert report.cells_encoded == local.table("cells").count_rows() == 72
    assert report.patches_written == local.table("patches").count_rows()
    assert_same_rows(db, sample_store)
    assert not (db / "_staging").exists() or not any((db / "_staging").iterdir())
    import lance

    for table in ("cells", "patches"):  # created empty, then one commit each (the ingest's optimize follows)
        path = str(db / f"{table}.lance")
        counts = [lance.dataset(path, version=v).count_rows() for v in (1, 2)]
        assert counts == [0, local.table(table).count_rows()], table


def test_chips_read_in_separate_tasks(cluster: str, sample_store: Path, tmp_path: Path) -> None:
    """The GPU-cluster layout, on CPUs: one-core tasks read chips and build graphs, the actor only encodes
    (the prepared partitions travel through Ray's object store)."""
    db = tmp_path / "db"
    ingest(
        str(db), *ARGS, settings=SETTINGS, engine=RayEngine(workers=1, address=cluster, prepare_in_tasks=True)
    )
    assert_same_rows(db, sample_store)


def test_osm_only_cells_match_the_local_engine(cluster: str, tmp_path: Path) -> None:
    """A region larger than the imagery, osm_only: cells outside it get OSM vectors alone, on both engines."""
    west, south, east, north = SAMPLE.bbox
    region = f"{west - 0.0006},{south - 0.0006},{east + 0.0006},{north + 0.0006}"
    settings = IngestSettings(**{**SETTINGS.__dict__, "osm_only": True})
    local = ingest(str(tmp_path / "local"), region, *ARGS[1:], settings=settings)
    distributed = ingest(
        str(tmp_path / "ray"),
        region,
        *ARGS[1:],
        settings=settings,
        engine=RayEngine(workers=2, address=cluster),
    )
    assert distributed.cells_osm_only == local.cells_osm_only > 0
    assert_same_rows(tmp_path / "ray", tmp_path / "local")


def test_rerun_finds_everything_stored(cluster: str, sample_store: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    _ray_ingest(db, cluster)
    again = _ray_ingest(db, cluster)
    assert again.cells_encoded == 0 and again.cells_already_stored == 72
    assert_same_rows(db, sample_store)


DRIVER = """
import sys
from geolink_store.pipeline import IngestSettings, RayEngine, ingest
from geolink_store.sample import kampala_sample
s = kampala_sample()
ingest(sys.argv[1], s.region, [str(s.imagery)], str(s.osm), engine=RayEngine(workers=1, address=sys.argv[2]),
       settings=IngestSettings(res=s.res, fine_res=s.fine_res, batch_size=8, partition_levels=1))
"""


def test_killed_driver_resumes_from_its_journal(cluster: str, sample_store: Path, tmp_path: Path) -> None:
    """SIGKILL the driver once some partitions are journaled: nothing is committed yet, and the rerun encodes
    only the other partitions (the journaled fragments are the ones committed) and ends with the local
    engine's rows."""
    db = tmp_path / "db"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(db), cluster], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    journaled: list[Path] = []
    while time.monotonic() < deadline and driver.poll() is None and len(journaled) < 2:
        journaled = list((db / "_staging").glob("*/*.json")) if (db / "_staging").exists() else []
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert len(journaled) >= 2, "the driver finished or stalled before journaling two partitions"
    assert Store.open(db).table("cells").count_rows() == 0
    staged = {
        json.loads(fragment)["files"][0]["path"]
        for record in journaled
        for fragments in json.loads(record.read_text())["fragments"].values()
        for fragment in fragments
    }
    _ray_ingest(db, cluster)
    import lance

    committed = {  # in any kept version: the ingest's optimize compacts them afterwards
        data.path
        for table in ("cells", "patches")
        for version in lance.dataset(str(db / f"{table}.lance")).versions()
        for fragment in lance.dataset(str(db / f"{table}.lance"), version=version["version"]).get_fragments()
        for data in fragment.data_files()
    }
    assert staged <= committed
    assert_same_rows(db, sample_store)


def test_stale_rows_are_replaced_in_the_same_commit(cluster: str, sample_store: Path, tmp_path: Path) -> None:
    """A local ingest killed between a batch's patches and its cells leaves patches without their cell: the
    Ray engine re-encodes those cells and drops the old patches in its commit; --overwrite replaces
    everything."""
    db = tmp_path / "db"
    ingest(str(db), *ARGS, settings=SETTINGS)
    cells = Store.open(db).table("cells")
    dropped = cells.to_arrow()["h3"].to_pylist()[:20]
    cells.delete(f"h3 IN ({', '.join(map(str, dropped))})")
    report = _ray_ingest(db, cluster)
    assert report.cells_encoded == 20
    assert_same_rows(db, sample_store)
    report = _ray_ingest(db, cluster, overwrite=True)
    assert report.cells_encoded == 72
    assert_same_rows(db, sample_store)


def test_cli_engine_ray(cluster: str, sample_store: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    result = CliRunner().invoke(
        main,
        [
            "ingest",
            "--db",
            str(db),
            "--region",
            SAMPLE.region,
            "--imagery",
            str(SAMPLE.imagery),
            "--osm",
            str(SAMPLE.osm),
            "--res",
            str(SAMPLE.res),
            "--fine-res",
            str(SAMPLE.fine_res),
            "--batch-size",
            "8",
            "--partition-levels",
            "1",
            "--engine",
            "ray",
            "--workers",
            "2",
            "--ray-address",
            cluster,
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["cells_encoded"] == 72
    assert_same_rows(db, sample_store)


@pytest.mark.parametrize(
    ("osm", "address", "workers", "message"),
    [
        ("truncated", "cluster", 2, "cut.osm.pbf"),
        ("sample", "127.0.0.1:9", 2, "no Ray cluster answers at 127.0.0.1:9"),
        ("sample", "cluster", 3, "the Ray cluster has 2 CPUs but 3 workers need 3"),
    ],
)
def test_cli_engine_ray_bad_input(
    cluster: str, tmp_path: Path, osm: str, address: str, workers: int, message: str
) -> None:
    """One error line and exit 1, no tables written: a truncated PBF (found before any worker starts), an
    address where no cluster runs, more workers than the cluster holds (Ray would queue them forever)."""
    (tmp_path / "cut.osm.pbf").write_bytes(b"\x00\x00\x00\x0d\n\tOSMHeader\x18\x90\x01")
    db = tmp_path / "db"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "geolink"),
            "ingest",
            "--db",
            str(db),
            "--region",
            SAMPLE.region,
            "--imagery",
            str(SAMPLE.imagery),
            "--osm",
            str(tmp_path / "cut.osm.pbf" if osm == "truncated" else SAMPLE.osm),
            "--res",
            str(SAMPLE.res),
            "--engine",
            "ray",
            "--workers",
            str(workers),
            "--ray-address",
            cluster if address == "cluster" else address,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr, result.stderr
    assert not db.exists() or not Store.open(db).table_names()
