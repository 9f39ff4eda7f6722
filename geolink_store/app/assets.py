"""The page assets that ship with the package: the vendored Leaflet and the explorer's own page.

Everything a page needs is here, so maps and the explorer work offline and never fetch from another host.
"""

from __future__ import annotations

import base64
import re
from functools import cache
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
"""The folder the explorer serves under ``/static``."""
LEAFLET = STATIC / "vendor" / "leaflet"
"""Leaflet 1.9.4 from the npm registry (see its ``VERSION`` and ``LICENSE``)."""

_CSS_IMAGE = re.compile(r"url\((images/[\w.-]+\.png)\)")


@cache
def inline_leaflet() -> tuple[str, str]:
    """Leaflet's CSS (its images as ``data:`` URIs) and JavaScript, for a single self-contained HTML file."""
    css = _CSS_IMAGE.sub(
        lambda found: f"url(data:image/png;base64,{_base64(LEAFLET / found.group(1))})",
        (LEAFLET / "leaflet.css").read_text(),
    )
    return css, (LEAFLET / "leaflet.js").read_text()


def page(name: str) -> str:
    """The text of one of the package's page files (``static/<name>``)."""
    return (STATIC / name).read_text()


def _base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")
