"""Bulk encoding on a Ray cluster: ``geolink ingest --engine ray``.

The driver plans the ingest exactly as the local engine does (:func:`~geolink_store.ingest.plan.plan_ingest`), then
hands out partitions (cells grouped by a coarse H3 parent). On CPU clusters each worker actor reads the chips,
builds the graphs and encodes its partition; on GPU clusters CPU tasks read chips and build graphs while GPU actors
encode. Either way the worker writes the partition's rows as uncommitted Lance fragments next to the tables and
returns their metadata, which the driver records in a staging journal inside the store. When every partition is
done the driver commits each table once (patches, then cells), replacing any rows of the same cells in the same
commit, and clears the journal. A run killed at any moment and started again with the same arguments finds its
journal and encodes only the partitions missing from it; a commit that went through before the kill is recognised
by its data files and not repeated.
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
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import torch

from geolink_store.chips import ChipTally
from geolink_store.constants import MODEL_COLUMN
from geolink_store.errors import GeolinkError
from geolink_store.graphs.builder import GraphBuilder
from geolink_store.ingest.plan import (
    ImageBatch,
    IngestPlan,
    IngestReport,
    IngestSettings,
    OsmOnlyBatch,
    Partition,
    Progress,
    encode_dtype,
    encode_work,
    partition_osm,
    partition_work,
)
from geolink_store.store.store import Store, cells_schema, file_system, patches_schema, sql_string
from model import GeoLink

TABLES = ("patches", "cells")
"""Commit order: a cell is never visible without its patches."""
IN_FLIGHT_PER_WORKER = 2
"""Partitions handed out ahead per worker: enough to keep it busy, few enough to bound prepared chips in memory."""
STORAGE_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_")
"""Environment variables that object stores read, passed on to the workers of a cluster this run starts or joins."""
STALE_KEY = {"patches": "parent", "cells": "h3"}
"""The column that ties a table's rows to the cells being (re-)encoded."""


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
class PreparedPartition:
    """A partition's chips and graphs, ready for the model (made on a CPU worker, encoded on a GPU actor)."""

    key: int
    cells: int
    work: list[ImageBatch | OsmOnlyBatch]
    tally: ChipTally


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker needs besides the model: the plan's sources and where to write."""

    imagery: Any
    osm: str
    chip_crs: Any
    builder: GraphBuilder
    settings: IngestSettings
    model_id: str
    schemas: dict[str, pa.Schema]
    table_uris: dict[str, str]


def prepare(spec: WorkerSpec, partition: Partition) -> PreparedPartition:
    """Read a partition's chips and build its graphs (the CPU side)."""
    tally = ChipTally()
    work = list(
        partition_work(spec.imagery, spec.osm, partition, spec.chip_crs, spec.builder, spec.settings, tally)
    )
    return PreparedPartition(partition.parent, int(partition.cells.size), work, tally)


class PartitionEncoder:
    """A worker holding the model: encodes prepared partitions and writes their rows as Lance fragments."""

    def __init__(self, model: GeoLink, spec: WorkerSpec, threads: int) -> None:
        torch.set_num_threads(threads)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(device).eval()
        self.spec = spec
        self.dtype = encode_dtype(spec.settings, device)

    def prepare_and_encode(self, partition: Partition) -> PartitionResult:
        """Both sides of a partition in this worker (CPU clusters: the same cores would do both anyway)."""
        return self.encode(prepare(self.spec, partition))

    def encode(self, prepared: PreparedPartition) -> PartitionResult:
        """Encode a prepared partition and write its rows as uncommitted fragments."""
        import lance

        spec = self.spec
        counts = IngestReport(model_id=spec.model_id)
        counts.add_tally(prepared.tally)
        rows: dict[str, list[pa.Table]] = {table: [] for table in TABLES}
        for work in prepared.work:
            encoded = encode_work(self.model, work, spec.settings, spec.model_id, self.dtype)
            encoded.add_to(counts)
            if encoded.patches is not None:
                rows["patches"].append(encoded.patches)
            rows["cells"].append(encoded.cells)
        fragments = {}
        for table, parts in rows.items():
            if parts:
                schema = spec.schemas[table]
                data = pa.concat_tables(parts).select(schema.names).cast(schema)
                written = lance.fragment.write_fragments(data, spec.table_uris[table], schema=schema)
                fragments[table] = [json.dumps(fragment.to_json()) for fragment in written]
        return PartitionResult(
            prepared.key, prepared.cells, fragments, {name: getattr(counts, name) for name in COUNTED}
        )


class StagingJournal:
    """Finished partitions of one run, one JSON file each under ``<store>/_staging/<run key>/``.

    Each file is written whole before it gets its final name, so a kill leaves either a complete record or none.
    """

    def __init__(self, store: Store, run_key: str) -> None:
        self.fs, root = file_system(store.location)
        self.directory = f"{root.rstrip('/')}/_staging/ingest-{run_key}"

    def finished(self) -> dict[int, PartitionResult]:
        """The partitions recorded so far."""
        selector = pafs.FileSelector(self.directory, allow_not_found=True)
        results = {}
        for info in self.fs.get_file_info(selector):
            if info.path.endswith(".json"):
                with self.fs.open_input_stream(info.path) as stream:
                    result = PartitionResult(**json.loads(stream.read()))
                results[result.key] = result
        return results

    def record(self, result: PartitionResult) -> None:
        """Add a finished partition."""
        self.fs.create_dir(self.directory, recursive=True)
        final = f"{self.directory}/{result.key:x}.json"
        with self.fs.open_output_stream(final + ".tmp") as stream:
            stream.write(json.dumps(asdict(result)).encode())
        self.fs.move(final + ".tmp", final)

    def clear(self) -> None:
        """Forget the run (after its commit)."""
        if self.fs.get_file_info(self.directory).type != pafs.FileType.NotFound:
            self.fs.delete_dir(self.directory)


@dataclass(frozen=True)
class RayEngine:
    """Run an ingest on a Ray cluster: ``ingest(..., engine=RayEngine(workers=8, address="auto"))``.

    Attributes:
        workers: encoder actors (one GPU each on a GPU cluster, ``cpus_per_worker`` cores each otherwise).
        address: a running cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``); default: the cluster this
            process is connected to, or a new local one with ``workers x cpus_per_worker`` CPUs for the run.
        gpus_per_worker: GPUs per encoder actor; default: 1 when the cluster has GPUs, else 0.
        cpus_per_worker: cores per CPU encoder actor (its torch threads).
        prepare_in_tasks: read chips and build graphs in separate one-core Ray tasks instead of in the encoder
            actors; default: on GPU clusters, so that the GPUs only encode. On a CPU cluster it needs free cores
            beside the actors'.
    """

    workers: int = 2
    address: str | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: int = 1
    prepare_in_tasks: bool | None = None

    def run(self, plan: IngestPlan, advance: Progress | None) -> None:
        try:
            import ray
        except ImportError:
            raise GeolinkError("the Ray engine needs Ray: pip install 'geolink-store[ray]'") from None
        partitions = {partition.parent: partition for partition in plan.partitions()}
        if not partitions:
            return
        partition_osm(
            plan.osm, next(iter(partitions.values())).cells
        )  # a bad OSM source fails here, before writes
        journal = StagingJournal(plan.store, _run_key(plan))
        finished = {key: result for key, result in journal.finished().items() if key in partitions}
        if advance and finished:
            advance(sum(result.cells for result in finished.values()))
        todo = [partition for key, partition in partitions.items() if key not in finished]
        if todo:
            owns_cluster = not ray.is_initialized()
            if owns_cluster:
                _connect(ray, self.address, self.workers * self.cpus_per_worker)
            try:
                for result in self._encode(ray, plan, todo):
                    journal.record(result)
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
                _commit(
                    plan.store,
                    table,
                    [f for r in results for f in r.fragments.get(table, [])],
                    plan.todo,
                    plan.report.model_id,
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
            raise GeolinkError(
                f"the Ray cluster has {have:g} {unit} but {self.workers} workers need {need:g}: "
                "lower --workers (or --cpus-per-worker), or add nodes"
            )

    def _encode(self, ray, plan: IngestPlan, todo: list[Partition]) -> Iterator[PartitionResult]:
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
            cause = error.as_instanceof_cause()
            if isinstance(cause, GeolinkError):
                raise GeolinkError(str(cause).splitlines()[-1].removeprefix("GeolinkError: ")) from None
            raise


def _connect(ray, address: str | None, local_cpus: int) -> None:
    """Join the cluster at ``address``, or start a local one with ``local_cpus`` CPUs."""
    if address and address != "auto":  # Ray itself waits minutes for an address where nothing answers
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError):
            raise GeolinkError(
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
            raise GeolinkError(f"cannot join the Ray cluster at {address}: {error}") from None


def _storage_env() -> dict[str, str]:
    """The object-store settings of this process (credentials, endpoint, region), for the workers' writes."""
    return {name: value for name, value in os.environ.items() if name.startswith(STORAGE_ENV_PREFIXES)}


def _worker_spec(plan: IngestPlan) -> WorkerSpec:
    widths = plan.widths()
    wanted = {
        "cells": cells_schema(widths["image"], widths["osm"], widths["fused"], plan.settings.res),
        "patches": patches_schema(widths["image"], widths["fused"]),
    }
    return WorkerSpec(
        imagery=plan.source,
        osm=plan.osm,
        chip_crs=plan.chip_crs,
        builder=plan.builder,
        settings=plan.settings,
        model_id=plan.report.model_id,
        schemas={table: plan.store.ensure_table(table, schema) for table, schema in wanted.items()},
        table_uris={table: plan.store.table_uri(table) for table in TABLES},
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


def _commit(store: Store, table: str, fragments_json: list[str], cells: np.ndarray, model_id: str) -> None:
    """Commit the staged fragments of ``table`` in one Lance transaction that also drops the rows they replace."""
    import lance
    from lance import LanceOperation
    from lance.fragment import FragmentMetadata

    if not fragments_json:
        return
    fragments = [FragmentMetadata.from_json(f) for f in fragments_json]
    uri = store.table_uri(table)
    dataset = lance.dataset(uri)
    committed = {data.path for fragment in dataset.get_fragments() for data in fragment.data_files()}
    if fragments[0].data_files()[0].path in committed:
        return  # this commit went through before the run was interrupted
    removed, updated = _drop_rows(dataset, STALE_KEY[table], cells, model_id)
    operation = LanceOperation.Update(
        removed_fragment_ids=removed, updated_fragments=updated, new_fragments=fragments
    )
    lance.LanceDataset.commit(uri, operation, read_version=dataset.version)
    store.build_indexes(table)


def _drop_rows(dataset, key: str, cells: np.ndarray, model_id: str) -> tuple[list[int], list]:
    """Deletions (uncommitted) of the rows of ``model_id`` whose ``key`` is one of ``cells``: the fragments left
    empty and the fragments with new deletion files.
    """
    removed, updated = [], []
    wanted = pa.array(cells, type=pa.int64())
    for fragment in dataset.get_fragments():
        rows = fragment.to_table(columns=[key, MODEL_COLUMN])
        hit = pc.and_(pc.is_in(rows[key], value_set=wanted), pc.equal(rows[MODEL_COLUMN], model_id))
        matches = pc.unique(rows[key].filter(hit)).to_pylist()
        if not matches:
            continue
        predicate = f"{MODEL_COLUMN} = {sql_string(model_id)} AND {key} IN ({', '.join(map(str, matches))})"
        remaining = fragment.delete(predicate)
        if remaining is None:
            removed.append(fragment.fragment_id)
        else:
            updated.append(remaining)
    return removed, updated
