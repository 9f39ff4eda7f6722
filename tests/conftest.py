"""Shared test fixtures: paths to the real data beside the checkout, skipping when it is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Ray clusters in the tests are throwaway, on loopback. Ray 2.5x enables token authentication by default
# and a process keeps the mode of its first cluster, so every test cluster and driver runs with it off.
os.environ["RAY_AUTH_MODE"] = "disabled"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder (../shared/data); tests needing it skip in a fresh clone without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared real data at {SHARED_DATA} (absent in a fresh clone; present in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory) -> Path:
    """The bundled sample region ingested once with the default model, shared by every module: read it only
    (``sample_store_copy`` is the one to write to)."""
    from geolink_store.pipeline import IngestSettings, ingest
    from geolink_store.sample import kampala_sample

    sample = kampala_sample()
    db = tmp_path_factory.mktemp("sample") / "db"
    ingest(
        str(db),
        sample.region,
        [str(sample.imagery)],
        str(sample.osm),
        settings=IngestSettings(res=sample.res, fine_res=sample.fine_res),
    )
    return db


@pytest.fixture(scope="module")
def sample_store_copy(sample_store: Path, tmp_path_factory) -> Path:
    """This test module's own copy of ``sample_store``, to write to."""
    return Path(shutil.copytree(sample_store, tmp_path_factory.mktemp("sample-copy") / "db"))
