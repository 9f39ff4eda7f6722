"""The LanceDB store: tables of H3-indexed vectors, their schemas, atomic upserts and indexes."""

from geolink_store.store.indexes import INDEX_MIN_ROWS
from geolink_store.store.schema import (
    HEADS_SCHEMA,
    MODELS_SCHEMA,
    PREDICTIONS_SCHEMA,
    cells_schema,
    parent_column,
    parent_resolutions,
    patches_schema,
)
from geolink_store.store.store import Store, UpsertResult

__all__ = [
    "HEADS_SCHEMA",
    "INDEX_MIN_ROWS",
    "MODELS_SCHEMA",
    "PREDICTIONS_SCHEMA",
    "Store",
    "UpsertResult",
    "cells_schema",
    "parent_column",
    "parent_resolutions",
    "patches_schema",
]
