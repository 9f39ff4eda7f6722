"""The LanceDB store: tables of H3-indexed vectors, their schemas, atomic upserts and indexes.

Names are imported on first use (PEP 562), so that reading a schema or a constant (``geolink sql``,
``geolink search``) does not import LanceDB, which takes 1-1.5 s; :class:`Store` does.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HEADS_SCHEMA": "geolink_store.store.schema",
    "INDEX_MIN_ROWS": "geolink_store.store.indexes",
    "MODELS_SCHEMA": "geolink_store.store.schema",
    "PREDICTIONS_SCHEMA": "geolink_store.store.schema",
    "Store": "geolink_store.store.store",
    "UpsertResult": "geolink_store.store.store",
    "cells_schema": "geolink_store.store.schema",
    "parent_column": "geolink_store.store.schema",
    "parent_resolutions": "geolink_store.store.schema",
    "patches_schema": "geolink_store.store.schema",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # noqa: ANN401 (any exported object)
    """Import a public name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'geolink_store.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
