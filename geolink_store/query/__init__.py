"""Reading the store: similarity search, DuckDB SQL, GeoParquet export and maps."""

from geolink_store.query.export import export_table
from geolink_store.query.search import search
from geolink_store.query.sql import SqlSession, run_sql

__all__ = ["SqlSession", "export_table", "run_sql", "search"]
