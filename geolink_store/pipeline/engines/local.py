"""The local engine: an ingest in this process, each batch committed as soon as it is encoded.

Every batch is written as atomic upserts (patches first, then cells); a cell counts as done once its ``cells``
row exists, so an ingest killed at any moment and run again skips finished cells and rewrites the rest, ending
with exactly the rows of an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass

from geolink_store.chips import ChipTally
from geolink_store.constants import CELLS, PATCHES
from geolink_store.pipeline._work import ImageBatch, encode_work, partition_work
from geolink_store.pipeline.plan import IngestPlan, Progress


@dataclass(frozen=True)
class LocalEngine:
    """Encode in this process, partition by partition, each batch committed as soon as it is encoded."""

    def run(self, plan: IngestPlan, advance: Progress | None) -> None:
        """Carry out ``plan``, counting what was done in ``plan.report``."""
        tally = ChipTally()
        for partition in plan.partitions():
            image_cells = 0
            for work in partition_work(
                plan.source, plan.osm, partition, plan.chip_crs, plan.builder, plan.settings, tally
            ):
                rows = encode_work(plan.model, work, plan.settings, plan.report.model_id, plan.dtype)
                plan.register_model()  # after the partition's OSM was read: a bad source writes nothing
                if rows.patches is not None:
                    plan.store.upsert(PATCHES, rows.patches)
                plan.store.upsert(CELLS, rows.cells)
                rows.add_to(plan.report)
                if isinstance(work, ImageBatch):
                    image_cells += len(work.chips)
                    if advance:
                        advance(len(work.chips))
            if advance:  # cells of the partition encoded from OSM alone or skipped for lack of imagery
                advance(partition.cells.size - image_cells)
        plan.report.add_tally(tally)
