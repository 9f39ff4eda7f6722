"""geolink-store: H3-indexed GeoLink embeddings of imagery and OpenStreetMap, in LanceDB, queried with DuckDB."""

from importlib.metadata import version

__version__ = version("geolink-store")
