"""The local engine: an ingest in this process, the CPU side of the batches overlapped with encoding.

A worker thread reads the chips and builds the graphs of the next batches (:func:`~geolink_store.pipeline.
prefetch.prefetched`) while this thread encodes the current one, and another shapes the rows of the previous
batches and commits them (:class:`~geolink_store.pipeline.writebehind.WriteBehind`), in groups, as
atomic upserts (patches first, then cells): the first batch at once (the tables exist from then on, and a
store that cannot be written fails the ingest early), then every :attr:`LocalEngine.commit_cells` cells or
:attr:`LocalEngine.commit_seconds` seconds, so a large region makes one table version per thousand cells, not
one per batch. A cell counts as done once its ``cells`` row exists, so an ingest killed at any moment and run
again skips finished cells and rewrites the rest (at most one commit's worth), ending with exactly the rows of
an uninterrupted run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import torch

from geolink_store.chips import ChipTally
from geolink_store.constants import CELLS, PATCHES
from geolink_store.pipeline._work import (
    EncodedBatch,
    EncodedRows,
    ImageBatch,
    Work,
    batch_rows,
    encode_batch,
    partition_work,
)
from geolink_store.pipeline.plan import IngestPlan, Partition, Progress, vector_widths
from geolink_store.pipeline.prefetch import prefetched
from geolink_store.pipeline.writebehind import WriteBehind
from geolink_store.store import Store
from model import GeoLink


@dataclass(frozen=True)
class LocalEngine:
    """Encode in this process; read the next batches ahead and write the previous ones behind, in threads.

    Attributes:
        prefetch: batches read and built ahead of the one being encoded, and encoded batches waiting for their
            rows to be written (0: none, all in this thread). Default (None): 2 where the encode leaves CPU
            cores free (a model on an accelerator, or torch on fewer threads than there are cores), else 0:
            on a CPU whose every core runs torch, the worker threads only take their time from the encode
            (measured in BENCHMARKS.md).
        commit_cells: commit once this many encoded cells are waiting.
        commit_seconds: commit at the latest this many seconds after the previous commit.
    """

    prefetch: int | None = None
    commit_cells: int = 1024
    commit_seconds: float = 30.0

    def run(self, plan: IngestPlan, advance: Progress | None) -> None:
        """Carry out ``plan``, counting what was done in ``plan.report``."""
        tally = ChipTally()
        pending = _PendingRows(plan.store, self.commit_cells, self.commit_seconds)
        widths = vector_widths(plan.model)

        def write(batch: EncodedBatch) -> None:
            rows = batch_rows(batch, plan.settings, plan.report.model_id, widths)
            pending.add(rows)
            rows.add_to(plan.report)

        depth = self.prefetch if self.prefetch is not None else _default_depth(plan.model)
        image_cells = 0
        with WriteBehind(write, depth) as writer:
            for partition, work in prefetched(_all_work(plan, tally), depth):
                if work is None:  # the partition's other cells: encoded from OSM alone, or without imagery
                    if advance:
                        advance(partition.cells.size - image_cells)
                    image_cells = 0
                    continue
                batch = encode_batch(plan.model, work, plan.settings, plan.dtype)
                plan.register_model()  # after the partition's OSM was read: a bad source writes nothing
                writer.put(batch)
                if isinstance(work, ImageBatch):
                    image_cells += len(work.chips)
                    if advance:
                        advance(len(work.chips))
        pending.commit()
        plan.report.add_tally(tally)


def _default_depth(model: GeoLink) -> int:
    """How far to read ahead and write behind by default (see :attr:`LocalEngine.prefetch`)."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    return 0 if on_cpu and torch.get_num_threads() >= (os.cpu_count() or 1) else 2


def _all_work(plan: IngestPlan, tally: ChipTally) -> Iterator[tuple[Partition, Work | None]]:
    """Every partition's batches, each partition closed by ``(partition, None)``."""
    for partition in plan.partitions():
        for work in partition_work(
            plan.source, plan.osm, partition, plan.chip_crs, plan.builder, plan.settings, tally
        ):
            yield partition, work
        yield partition, None


@dataclass
class _PendingRows:
    """Encoded rows waiting for their commit: one upsert per table for many batches."""

    store: Store
    max_cells: int
    max_seconds: float
    patches: list[pa.Table] = field(default_factory=list)
    cells: list[pa.Table] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)
    commits: int = 0

    def add(self, rows: EncodedRows) -> None:
        """Queue a batch's rows; commit with the first batch, then once enough cells or time have gathered."""
        if rows.patches is not None:
            self.patches.append(rows.patches)
        self.cells.append(rows.cells)
        waiting = sum(table.num_rows for table in self.cells)
        due = waiting >= self.max_cells or time.monotonic() - self.since >= self.max_seconds
        if due or not self.commits:
            self.commit()

    def commit(self) -> None:
        """Write the queued rows: the patches first, so that no cell is ever visible without its patches."""
        if self.patches:
            self.store.upsert(PATCHES, pa.concat_tables(self.patches))
        if self.cells:
            self.store.upsert(CELLS, pa.concat_tables(self.cells))
        self.patches, self.cells, self.since = [], [], time.monotonic()
        self.commits += 1
