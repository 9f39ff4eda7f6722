"""The explorer served for real (uvicorn on a free loopback port) and a real headless Chromium to drive it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from served import Served, serve, stop

CHROMIUM_NAMES = ("chromium-headless-shell", "chromium", "chromium-browser")
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/chromium")


@pytest.fixture(scope="module")
def explorer(sample_store: Path) -> Iterator[Served]:
    """The explorer over the ingested sample store (read only)."""
    served = serve(sample_store)
    yield served
    stop(served)


def chromium_executable() -> str | None:
    """The Debian Chromium (``chromium-headless-shell`` or ``chromium``), never a downloaded one."""
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return next((path for path in CHROMIUM_PATHS if Path(path).is_file()), None)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """A headless Chromium driven by Playwright (skips where neither Playwright nor Chromium is installed)."""
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    executable = chromium_executable()
    if executable is None:
        pytest.skip(
            "needs Debian's chromium-headless-shell (apt-get install chromium-headless-shell; .ci/run does)"
        )
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable)
        yield chromium
        chromium.close()
