"""The GeoLink network (NeurIPS 2025): imagery + OpenStreetMap, named sizes, official and own checkpoints.

Each public name is imported on first use (PEP 562), so that ``model.errors``, the root of the project's error
tree, loads without torch (``geolink --help`` stays fast).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "fingerprint": "model.checkpoint",
    "GeoLinkConfig": "model.config",
    "CheckpointError": "model.errors",
    "EncodeOutput": "model.geolink",
    "GeoLink": "model.geolink",
    "PretrainOutput": "model.geolink",
    "batch_graphs": "model.graphs",
    "empty_graph": "model.graphs",
    "from_official_graph": "model.graphs",
    "GEOMETRY_DIM": "model.graphs",
    "GEOMETRY_FEATURES": "model.graphs",
    "has_geometry": "model.graphs",
    "EDGE_TYPES": "model.osm",
    "NODE_TYPES": "model.osm",
    "POINTS_PER_NODE": "model.osm",
    "PRESET_NAMES": "model.presets",
    "preset": "model.presets",
}
"""Public name -> the module that defines it."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # noqa: ANN401 (any exported object)
    """Import a public name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
