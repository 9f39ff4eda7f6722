"""geolink-store: H3-indexed GeoLink embeddings of imagery and OpenStreetMap, in LanceDB, queried with DuckDB."""

__version__ = "0.1.0"
