"""``ingest()``: plan an ingest, then carry it out with an engine (in this process by default)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from geolink_store.graphs.builder import GraphBuilder
from geolink_store.pipeline.engines.local import LocalEngine
from geolink_store.pipeline.plan import (
    IngestPlan,
    IngestReport,
    IngestSettings,
    ModelSource,
    Progress,
    plan_ingest,
)
from geolink_store.store.upkeep import Retention

INGEST_RETENTION = Retention(older_than=timedelta(minutes=5))
"""What the optimize ending an ingest keeps: the versions of the last 5 minutes, so that a search or SQL query
still reading a version from before it finds that version's files (``geolink optimize`` prunes them later)."""


class Engine(Protocol):
    """Carries out an :class:`IngestPlan`, counting what it did in ``plan.report``."""

    def run(self, plan: IngestPlan, advance: Progress | None) -> None:
        """Encode and store the plan's cells; ``advance`` receives the cells finished as work completes."""


def ingest(
    db: str,
    region: object,
    imagery: list[str],
    osm: str | None,
    *,
    model: ModelSource = None,
    model_name: str = "default",
    settings: IngestSettings | None = None,
    graph_builder: GraphBuilder | None = None,
    engine: Engine | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> IngestReport:
    """Encode every cell of ``region`` covered by ``imagery`` into the store at ``db``, then optimize it.

    The optimize (:meth:`~geolink_store.store.store.Store.optimize`) keeps :data:`INGEST_RETENTION`.

    Args:
        db: the store, a directory or an object-store URI (created if missing).
        region: what :func:`~geolink_store.grid.region_cells` reads: a bbox (W > E wraps over the
            antimeridian), a GeoJSON or vector file, cells.
        imagery: raster files or tile folders.
        osm: an OSM PBF, a vector file, or an official example folder; None encodes the imagery alone.
        model: the GeoLink to encode with, or a function that loads it once the inputs passed their checks
            (default: the bundled model).
        model_name: its name in the ``models`` table.
        settings: see :class:`IngestSettings`.
        graph_builder: how OSM becomes graphs (default: :class:`~geolink_store.graphs.builder.GraphBuilder`,
            with ``geometry=True`` when the model has ``config.node_geometry``).
        engine: where the work runs: :class:`~geolink_store.pipeline.engines.local.LocalEngine` (default, this
            process) or :class:`~geolink_store.pipeline.engines.ray.RayEngine` (a Ray cluster).
        progress: ``progress(total)`` may return a callback that receives the number of cells finished as work
            completes.
    """
    started = time.perf_counter()
    plan = plan_ingest(
        db,
        region,
        imagery,
        osm,
        model=model,
        model_name=model_name,
        settings=settings,
        graph_builder=graph_builder,
    )
    (engine or LocalEngine()).run(plan, progress(int(plan.todo.size)) if progress else None)
    plan.record_imagery()
    plan.store.optimize(INGEST_RETENTION)
    plan.report.seconds = time.perf_counter() - started
    return plan.report
