"""A store on an S3 URI: ingest (local and Ray engines), search, SQL and info against a local S3 server.

The server is moto's (``moto_server``, an in-process emulation of the S3 API over HTTP): these tests show that
every path reaches the store through the S3 protocol with credentials and endpoint taken from the environment.
They do not show AWS behaviour (latency, eventual listing, IAM); see the README's scale-out guide for what was
and was not tested.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from geolink_store.cli import main
from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.query.search import search
from geolink_store.query.sql import run_sql
from geolink_store.sample import kampala_sample
from geolink_store.store import Store

boto3 = pytest.importorskip("boto3", reason="the S3 tests need moto's server: pip install 'moto[s3,server]'")
SAMPLE = kampala_sample()
SETTINGS = IngestSettings(res=SAMPLE.res, fine_res=SAMPLE.fine_res, batch_size=8, partition_levels=1)
ARGS = (SAMPLE.region, [str(SAMPLE.imagery)], str(SAMPLE.osm))


@pytest.fixture(scope="module")
def bucket() -> str:
    """A fresh bucket on a local S3 server; AWS_* variables point every client at it for the module."""
    server_cli = Path(sys.executable).parent / "moto_server"
    if not server_cli.exists():
        pytest.skip("moto_server is not installed (pip install 'moto[s3,server]')")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(server_cli), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    settings = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        deadline = time.monotonic() + 30
        while True:
            try:
                boto3.client("s3").create_bucket(Bucket="geolink")
                break
            except Exception:  # the server is still starting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield "s3://geolink"
    server.terminate()
    server.wait()


def _fused(store: Store) -> np.ndarray:
    cells = store.table("cells").to_arrow().sort_by("h3")
    return np.stack(cells["fused"].to_numpy(zero_copy_only=False))


def _keys(bucket: str, prefix: str) -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket.removeprefix("s3://"), Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


@pytest.fixture(scope="module")
def s3_store(bucket: str) -> str:
    uri = f"{bucket}/local-engine"
    assert ingest(uri, *ARGS, settings=SETTINGS).cells_encoded == 72
    return uri


def test_local_engine_search_sql_info_on_s3(bucket: str, s3_store: str, sample_store: Path) -> None:
    uri = s3_store
    report = Store.open(uri).info()["tables"]["patches"]
    store = Store.open(uri)
    np.testing.assert_allclose(_fused(store), _fused(Store.open(sample_store)), atol=1e-5)
    query = store.table("cells").to_arrow()["h3"][0].as_py()
    found = search(store, cells=query, k=5)
    assert len(found) == 5 and query not in found["h3"].tolist()
    rows = run_sql(uri, "SELECT count(*) AS n, count(DISTINCT parent) AS cells FROM patches").to_pylist()
    assert rows == [{"n": report["rows"], "cells": 72}]
    info = store.info()
    assert info["tables"]["cells"]["rows"] == 72 and info["size_bytes"] > 100_000
    assert any(key.startswith("local-engine/cells.lance/") for key in _keys(bucket, "local-engine/"))


def test_ray_engine_on_s3(bucket: str, sample_store: Path) -> None:
    """The Ray engine starts its own 2-CPU local cluster; its workers get the driver's AWS_* settings."""
    pytest.importorskip("ray", reason="the Ray engine needs `pip install geolink-store[ray]`")
    from geolink_store.pipeline import RayEngine

    uri = f"{bucket}/ray-engine"
    report = ingest(uri, *ARGS, settings=SETTINGS, engine=RayEngine(workers=2))
    assert report.cells_encoded == 72
    np.testing.assert_allclose(_fused(Store.open(uri)), _fused(Store.open(sample_store)), atol=1e-5)
    assert not [key for key in _keys(bucket, "ray-engine/_staging/") if key.endswith(".json")]
    assert ingest(uri, *ARGS, settings=SETTINGS, engine=RayEngine(workers=2)).cells_already_stored == 72


def test_cli_on_an_s3_store(s3_store: str, tmp_path: Path) -> None:
    """info, search, sql, heads train/list/predict and export, each through the CLI on the s3:// store."""
    cells = Store.open(s3_store).table("cells").to_arrow()["h3"].to_pylist()
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"h3": [f"{c:x}" for c in cells], "label": ["a", "b"] * (len(cells) // 2)}).to_csv(
        labels, index=False
    )
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(main, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    assert json.loads(ok("info", "--db", s3_store, "--format", "json"))["tables"]["cells"]["rows"] == 72
    assert (
        len(
            json.loads(
                ok("search", "--db", s3_store, "--cell", f"{cells[0]:x}", "--k", "4", "--format", "json")
            )
        )
        == 4
    )
    assert "72" in ok("sql", "--db", s3_store, "SELECT count(*) FROM cells")
    ok(
        "heads",
        "train",
        "--db",
        s3_store,
        "--labels",
        str(labels),
        "--label-column",
        "label",
        "--split",
        "random",
    )
    heads = json.loads(ok("heads", "list", "--db", s3_store, "--format", "json"))
    assert len(heads) == 1
    ok("heads", "predict", "--db", s3_store, "--head", heads[0]["head_id"])
    ok("export", "--db", s3_store, "--table", "cells", "--out", str(tmp_path / "cells.parquet"))
    assert len(gpd.read_parquet(tmp_path / "cells.parquet")) == 72
