"""Where an ingest runs: in this process (:mod:`~geolink_store.pipeline.engines.local`) or on Ray."""

from geolink_store.pipeline.engines.local import LocalEngine
from geolink_store.pipeline.engines.ray import RayEngine

__all__ = ["LocalEngine", "RayEngine"]
