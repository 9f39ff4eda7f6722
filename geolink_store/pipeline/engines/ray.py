"""Bulk encoding on a Ray cluster: ``geolink ingest --engine ray``.

The driver plans the ingest exactly as the local engine does (:func:`~geolink_store.pipeline.plan_ingest`),
then hands out partitions (cells grouped by a coarse H3 parent). On CPU clusters each worker actor reads the
chips, builds the graphs and encodes its partition; on GPU clusters CPU tasks read chips and build graphs
while GPU actors encode. Either way the worker writes the partition's rows as uncommitted Lance fragments
(:meth:`~geolink_store.store.store.Store.write_fragments`) and returns their metadata, which the driver
records in a staging journal inside the store (:meth:`~geolink_store.store.store.Store.journal`). When every
partition is done the driver commits each table once, patches then cells, replacing any rows of the same cells
in the same commit (:meth:`~geolink_store.store.store.Store.commit_fragments`), and clears the journal. A run
killed at any moment and started again with the same arguments finds its journal and encodes only the
partitions missing from it; a commit that went through before the kill is recognised by its data files and not
repeated.

This module only schedules: every write goes through :class:`~geolink_store.store.store.Store`. Ray and
pylance are imported when a run starts, so the module imports without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from pyproj import CRS

from geolink_store._optional import import_optional
from geolink_store.chips import ChipTally
from geolink_store.constants import CELLS, PATCHES
from geolink_store.errors import GeolinkError, InputError
from geolink_store.graphs.builder import GraphBuilder
from geolink_store.pipeline._work import Work, encode_work, partition_work
from geolink_store.pipeline.plan import (
    IngestPlan,
    IngestReport,
    IngestSettings,
    Partition,
    Progress,
    partition_osm,
)
from geolink_store.sources.mosaic import ImagerySource
from geolink_store.store import Store
from model import GeoLink

TABLES = (PATCHES, CELLS)
"""Commit order: a cell is never visible without its patches."""
IN_FLIGHT_PER_WORKER = 2
"""Partitions handed out ahead per worker: enough to keep it busy, few enough to bound the chips held."""
STORAGE_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_")
"""Environment variables that object stores read, passed on to the workers of the cluster a run uses."""
COUNTED = (
    "cells_encoded",
    "cells_with_osm",
    "cells_osm_only",
    "patches_written",
    "cells_too_sparse",
    "cells_without_imagery",
    "skipped_cells",
)
"""The :class:`IngestReport` fields that partitions add up."""


@dataclass
class PartitionResult:
    """What a worker did with one partition: its fragments' metadata (JSON) per table and its counts."""

    key: int
    cells: int
    fragments: dict[str, list[str]]
    counts: dict[str, Any]

    def add_to(self, report: IngestReport) -> None:
        """Count this partition in ``report``."""
        for name in COUNTED:
            setattr(report, name, getattr(report, name) + self.counts[name])


@dataclass
class PreparedPartition:
    """A partition's chips and graphs, ready for the model (made on a CPU worker, encoded on a GPU actor)."""

    key: int
    cells: int
    work: list[Work]
    tally: ChipTally


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker needs besides the model: the plan's sources and the store to write to."""

    imagery: ImagerySource
    osm: str
    chip_crs: CRS
    builder: GraphBuilder
    settings: IngestSettings
    model_id: str
    store: Store


def prepare(spec: WorkerSpec, partition: Partition) -> PreparedPartition:
    """Read a partition's chips and build its graphs (the CPU side)."""
    tally = ChipTally()
    work = list(
        partition_work(spec.imagery, spec.osm, partition, spec.chip_crs, spec.builder, spec.settings, tally)
    )
    return PreparedPartition(partition.parent, int(partition.cells.size), work, tally)


class PartitionEncoder:
    """A worker holding the model: encodes prepared partitions and writes their rows as staged fragments."""

    def __init__(self, model: GeoLink, spec: WorkerSpec, threads: int) -> None:
        torch.set_num_threads(threads)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(device).eval()
        self.spec = spec
        self.dtype = spec.settings.dtype(device)

    def prepare_and_encode(self, partition: Partition) -> PartitionResult:
        """Both sides of a partition in this worker (CPU clusters: the same cores would do both anyway)."""
        return self.encode(prepare(self.spec, partition))

    def encode(self, prepared: PreparedPartition) -> PartitionResult:
        """Encode a prepared partition and write its rows as uncommitted fragments."""
        spec = self.spec
        counts = IngestReport(model_id=spec.model_id)
        counts.add_tally(prepared.tally)
        rows: dict[str, list[pa.Table]] = {table: [] for table in TABLES}
        for work in prepared.work:
            encoded = encode_work(self.model, work, spec.settings, spec.model_id, self.dtype)
            encoded.add_to(counts)
            if encoded.patches is not None:
                rows[PATCHES].append(encoded.patches)
            rows[CELLS].append(encoded.cells)
        fragments = {
            table: spec.store.write_fragments(table, pa.concat_tables(parts))
            for table, parts in rows.items()
            if parts
        }
        return PartitionResult(
            prepared.key, prepared.cells, fragments, {name: getattr(counts, name) for name in COUNTED}
        )


@dataclass(frozen=True)
class RayEngine:
    """Run an ingest on a Ray cluster: ``ingest(..., engine=RayEngine(workers=8, address="auto"))``.

    Attributes:
        workers: encoder actors (one GPU each on a GPU cluster, ``cpus_per_worker`` cores each otherwise).
        address: a running cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``); default: the cluster
            this process is connected to, or a new local one with ``workers x cpus_per_worker`` CPUs for the
            run.
        gpus_per_worker: GPUs per encoder actor; default: 1 when the cluster has GPUs, else 0.
        cpus_per_worker: cores per CPU encoder actor (its torch threads).
        prepare_in_tasks: read chips and build graphs in separate one-core Ray tasks instead of in the encoder
            actors; default: on GPU clusters, so that the GPUs only encode. On a CPU cluster it needs free
            cores beside the actors'.
    """

    workers: int = 2
    address: str | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: int = 1
    prepare_in_tasks: bool | None = None

    def run(self, plan: IngestPlan, advance: Progress | None) -> None:
        """Carry out ``plan`` on the cluster, counting what was done in ``plan.report``.

        Raises:
            MissingDependencyError: Ray or pylance is not installed.
            InputError: no cluster answers at ``address``, or it cannot hold the workers.
        """
        ray = import_optional("ray", "the Ray engine")
        import_optional("lance", "the Ray engine")
        partitions = {partition.parent: partition for partition in plan.partitions()}
        if not partitions:
            return
        partition_osm(
            plan.osm, next(iter(partitions.values())).cells
        )  # a bad OSM source fails here, before writes
        journal = plan.store.journal(f"ingest-{_run_key(plan)}")
        finished = {
            result.key: result
            for result in (PartitionResult(**record) for record in journal.finished().values())
            if result.key in partitions
        }
        if advance and finished:
            advance(sum(result.cells for result in finished.values()))
        todo = [partition for key, partition in partitions.items() if key not in finished]
        if todo:
            owns_cluster = not ray.is_initialized()
            if owns_cluster:
                _connect(ray, self.address, self.workers * self.cpus_per_worker)
            try:
                for result in self._encode(ray, plan, todo):
                    journal.record(result.key, asdict(result))
                    finished[result.key] = result
                    if advance:
                        advance(result.cells)
            finally:
                if owns_cluster:
                    ray.shutdown()
        results = [finished[key] for key in sorted(finished)]
        if any(result.fragments for result in results):
            plan.register_model()
            for table in TABLES:
                plan.store.commit_fragments(
                    table,
                    [f for r in results for f in r.fragments.get(table, [])],
                    model_id=plan.report.model_id,
                    epoch=plan.settings.epoch,
                    replace=plan.todo,
                )
        journal.clear()
        for result in results:
            result.add_to(plan.report)

    def _check_fits(self, cluster: dict[str, float], gpus: float, in_tasks: bool) -> None:
        """Refuse workers the cluster cannot hold now (Ray would queue them forever)."""
        if gpus:
            need, have, unit = self.workers * gpus, cluster.get("GPU", 0), "GPUs"
        else:
            need, have, unit = (
                self.workers * self.cpus_per_worker + int(in_tasks),
                cluster.get("CPU", 0),
                "CPUs",
            )
        if need > have:
            raise InputError(
                f"the Ray cluster has {have:g} {unit} but {self.workers} workers need {need:g}: "
                "lower workers=N (or cpus_per_worker=N), or add nodes"
            )

    def _encode(self, ray: ModuleType, plan: IngestPlan, todo: list[Partition]) -> Iterator[PartitionResult]:
        """Encode the partitions on the encoder actors, yielding each result as it arrives."""
        cluster = ray.cluster_resources()
        gpus = self.gpus_per_worker
        if gpus is None:
            gpus = 1 if cluster.get("GPU") else 0
        in_tasks = self.prepare_in_tasks if self.prepare_in_tasks is not None else bool(gpus)
        self._check_fits(cluster, gpus, in_tasks)
        actor = ray.remote(PartitionEncoder).options(
            num_gpus=gpus, num_cpus=0 if gpus else self.cpus_per_worker
        )
        model_ref, spec_ref = ray.put(plan.model), ray.put(_worker_spec(plan))
        pool = ray.util.ActorPool(
            [actor.remote(model_ref, spec_ref, self.cpus_per_worker) for _ in range(self.workers)]
        )
        prepare_remote = ray.remote(prepare).options(num_cpus=1)

        def submit(partition: Partition) -> None:
            if in_tasks:  # chips and graphs on the cluster's CPUs, the model in the actors
                prepared = prepare_remote.remote(spec_ref, partition)
                pool.submit(lambda worker, value: worker.encode.remote(value), prepared)
            else:
                pool.submit(lambda worker, value: worker.prepare_and_encode.remote(value), partition)

        queue = iter(todo)
        for partition in islice(queue, IN_FLIGHT_PER_WORKER * self.workers):
            submit(partition)
        try:
            while pool.has_next():
                result = pool.get_next_unordered()
                for partition in islice(queue, 1):
                    submit(partition)
                yield result
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, GeolinkError):  # the worker's one-line error, without Ray's traceback
                raise error.cause from None
            raise


def _connect(ray: ModuleType, address: str | None, local_cpus: int) -> None:
    """Join the cluster at ``address``, or start a local one with ``local_cpus`` CPUs."""
    if address and address != "auto":  # Ray itself waits minutes for an address where nothing answers
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError):
            raise InputError(
                f"no Ray cluster answers at {address} (start one with `ray start --head`)"
            ) from None
    with warnings.catch_warnings():  # Ray forks its daemons; they never touch this process's LanceDB
        warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
        try:
            ray.init(
                address=address,
                num_cpus=None if address else local_cpus,
                include_dashboard=False,
                logging_level="ERROR",
                log_to_driver=False,
                runtime_env={"env_vars": _storage_env()},
            )
        except ConnectionError as error:
            raise InputError(f"cannot join the Ray cluster at {address}: {error}") from None


def _storage_env() -> dict[str, str]:
    """The object-store settings of this process (credentials, endpoint, region), for the workers' writes."""
    return {name: value for name, value in os.environ.items() if name.startswith(STORAGE_ENV_PREFIXES)}


def _worker_spec(plan: IngestPlan) -> WorkerSpec:
    """The workers' view of ``plan``; creates the tables (empty) that their fragments will join."""
    for table, schema in plan.schemas().items():
        plan.store.ensure_table(table, schema)
    return WorkerSpec(
        imagery=plan.source,
        osm=plan.osm,
        chip_crs=plan.chip_crs,
        builder=plan.builder,
        settings=plan.settings,
        model_id=plan.report.model_id,
        store=plan.store,
    )


def _run_key(plan: IngestPlan) -> str:
    """Identifies a run: a rerun with the same arguments on the same store state finds the same journal."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            [plan.report.model_id, asdict(plan.settings), plan.imagery, str(plan.osm)], sort_keys=True
        ).encode()
    )
    digest.update(np.ascontiguousarray(plan.todo).tobytes())
    return digest.hexdigest()[:16]
