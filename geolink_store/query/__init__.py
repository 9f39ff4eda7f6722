"""Reading the store: similarity search, DuckDB SQL with H3 functions, zonal statistics, export and maps.

Names are imported on first use, so that ``geolink sql`` loads neither LanceDB nor geopandas for plain SQL.
Once the submodule ``geolink_store.query.search`` is imported, this package's attribute ``search`` is that
module: import the function from it (``geolink_store.search`` does).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SqlSession": "geolink_store.query.sql",
    "export_table": "geolink_store.query.export",
    "run_sql": "geolink_store.query.sql",
    "search": "geolink_store.query.search",
    "zonal_stats": "geolink_store.query.zonal",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # noqa: ANN401 (any exported object)
    """Import a public name on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'geolink_store.query' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
