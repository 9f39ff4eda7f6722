"""geolink-store: H3-indexed GeoLink embeddings of imagery and OpenStreetMap, in LanceDB, queried with DuckDB.

The public API, in the order data flows (each name is imported on first use, so that ``import geolink_store``
and ``geolink --help`` stay fast)::

    import geolink_store as gs

    report = gs.ingest("store", region, ["scene.tif"], "city.osm.pbf", settings=gs.IngestSettings(res=12))
    hits = gs.search(gs.Store.open("store"), lonlat=(32.59, 0.35), k=10)   # a GeoDataFrame
    table = gs.run_sql("store", "SELECT count(*) FROM cells")              # a pyarrow Table
"""

from __future__ import annotations

import importlib
from importlib.metadata import version
from typing import Any

__version__ = version("geolink-store")

_EXPORTS = {
    "ImagerySource": "geolink_store.sources.mosaic",
    "open_imagery": "geolink_store.sources.mosaic",
    "RasterSource": "geolink_store.sources.raster",
    "read_osm": "geolink_store.sources.osm",
    "ChipSpec": "geolink_store.chips",
    "chip_for_cell": "geolink_store.chips",
    "read_chips": "geolink_store.chips",
    "region_cells": "geolink_store.grid",
    "GraphBuilder": "geolink_store.graphs",
    "MiniLMEncoder": "geolink_store.graphs",
    "IngestReport": "geolink_store.pipeline",
    "IngestSettings": "geolink_store.pipeline",
    "LocalEngine": "geolink_store.pipeline",
    "RayEngine": "geolink_store.pipeline",
    "ingest": "geolink_store.pipeline",
    "plan_ingest": "geolink_store.pipeline",
    "Store": "geolink_store.store",
    "SqlSession": "geolink_store.query.sql",
    "export_table": "geolink_store.query.export",
    "run_sql": "geolink_store.query.sql",
    "search": "geolink_store.query.search",
    "zonal_stats": "geolink_store.query.zonal",
    "change_scores": "geolink_store.query.change",
    "disagreement": "geolink_store.query.disagree",
    "list_heads": "geolink_store.heads",
    "predict_from_store": "geolink_store.heads",
    "train_from_store": "geolink_store.heads",
    "kampala_sample": "geolink_store.sample",
    "CheckpointError": "geolink_store.errors",
    "EmptySourceError": "geolink_store.errors",
    "GeolinkError": "geolink_store.errors",
    "InputError": "geolink_store.errors",
    "MissingDependencyError": "geolink_store.errors",
    "StoreError": "geolink_store.errors",
}
"""Public name -> the module that defines or re-exports it."""

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:  # noqa: ANN401 (any exported object)
    """Import a public name on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'geolink_store' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
