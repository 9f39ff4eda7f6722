"""Shared test fixtures: paths to the real data beside the checkout, skipping when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Ray clusters in the tests are throwaway, on loopback. Ray 2.5x enables token authentication by default and a
# process keeps the mode of its first cluster, so every test cluster and driver runs with it off, from the start.
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
