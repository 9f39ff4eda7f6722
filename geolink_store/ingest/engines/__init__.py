"""Where an ingest runs: in this process (:mod:`~geolink_store.ingest.engines.local`) or on Ray (``.ray``)."""

from geolink_store.ingest.engines.local import LocalEngine
from geolink_store.ingest.engines.ray import RayEngine

__all__ = ["LocalEngine", "RayEngine"]
