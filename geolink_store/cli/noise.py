"""Known third-party warnings that say nothing to a geolink user, silenced by message and module only."""

from __future__ import annotations

import warnings

KNOWN_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (FutureWarning, r"`torch\.jit\.script` is deprecated", r"torch\.jit"),
    (UserWarning, r"lance is not fork-safe", r"lance"),
    (RuntimeWarning, r"lancedb fork support is experimental", r""),
    (Warning, r"Dataset has no geotransform, gcps, or rpcs", r"rasterio"),
    (RuntimeWarning, r"invalid value encountered in ", r"shapely"),
    (RuntimeWarning, r"Non closed ring detected", r"pyogrio"),
    (UserWarning, r"Could not find any OSM data for given area", r"pyrosm"),
)
"""(category, message regex, module regex) of each warning a command hides; any other warning still shows."""


def ignore_known_warnings() -> None:
    """Ignore each of :data:`KNOWN_WARNINGS` (call it inside ``warnings.catch_warnings``)."""
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
