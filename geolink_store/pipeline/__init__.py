"""Bulk encoding: region -> H3 cells -> chips + OSM graphs -> GeoLink -> ``cells`` and ``patches`` rows."""

from geolink_store.pipeline.engines.local import LocalEngine
from geolink_store.pipeline.engines.ray import RayEngine
from geolink_store.pipeline.plan import IngestPlan, IngestReport, IngestSettings, plan_ingest
from geolink_store.pipeline.run import ingest

__all__ = [
    "IngestPlan",
    "IngestReport",
    "IngestSettings",
    "LocalEngine",
    "RayEngine",
    "ingest",
    "plan_ingest",
]
