"""End-to-end ingest throughput (cells/s) of the bundled sample beside the model's own encode rate, one run.

Run: .venv/bin/python bench/bench_ingest.py [--repeats 3] [--model CKPT]
Cases, each best of ``--repeats`` into a fresh store (after one warm-up ingest that loads the tag encoder):

- encode alone: ``GeoLink.encode`` of the very chips and graphs the ingest makes (read and built beforehand,
  not timed), batch 16: the ceiling of any ingest;
- ingest, sequential: :class:`LocalEngine` with ``prefetch=0`` and a commit per batch (how it ran before);
- ingest, overlapped: the default :class:`LocalEngine` (chips read and graphs built in a worker thread two
  batches ahead; rows committed per 1,024 cells).

``ingest / encode`` is the share of the encode rate an ingest keeps (target >= 0.85). Every ingest includes
the plan (imagery opened, OSM checked, store listed), the commits and the closing optimize.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch

from geolink_store.chips import ChipTally
from geolink_store.pipeline import IngestSettings, ingest, plan_ingest
from geolink_store.pipeline._work import ImageBatch, partition_work
from geolink_store.pipeline.engines.local import LocalEngine
from geolink_store.sample import kampala_sample
from geolink_store.testing import bench_record
from model import GeoLink

SAMPLE = kampala_sample()


def ingest_rate(model: GeoLink, engine: LocalEngine, folder: str, repeats: int) -> float:
    """The best cells/s of a whole ingest of the sample into a fresh store."""
    settings = IngestSettings(res=SAMPLE.res, fine_res=SAMPLE.fine_res)
    best = 0.0
    for run in range(repeats):
        start = time.perf_counter()
        report = ingest(
            f"{folder}/{id(engine)}-{run}",
            SAMPLE.region,
            [str(SAMPLE.imagery)],
            str(SAMPLE.osm),
            model=model,
            settings=settings,
            engine=engine,
        )
        best = max(best, report.cells_encoded / (time.perf_counter() - start))
    return best


@torch.no_grad()
def encode_rate(model: GeoLink, folder: str, repeats: int) -> float:
    """The best cells/s of ``model.encode`` alone on the sample's own chips and graphs."""
    settings = IngestSettings(res=SAMPLE.res, fine_res=SAMPLE.fine_res)
    plan = plan_ingest(
        f"{folder}/encode",
        SAMPLE.region,
        [str(SAMPLE.imagery)],
        str(SAMPLE.osm),
        model=model,
        settings=settings,
    )
    batches = [
        work
        for partition in plan.partitions()
        for work in partition_work(
            plan.source, plan.osm, partition, plan.chip_crs, plan.builder, settings, ChipTally()
        )
        if isinstance(work, ImageBatch)
    ]
    images = [torch.from_numpy(np.stack([chip.image for chip in batch.chips])) for batch in batches]
    cells = sum(len(batch.chips) for batch in batches)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for batch, image in zip(batches, images, strict=True):
            model.encode(image, batch.graphs, dtype=plan.dtype)
        best = max(best, cells / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", help="a checkpoint (default: the bundled default model)")
    args = parser.parse_args()
    model = (GeoLink.from_checkpoint(args.model) if args.model else GeoLink.default()).eval()
    sequential = LocalEngine(prefetch=0, commit_cells=1)
    overlapped = LocalEngine()
    with tempfile.TemporaryDirectory() as folder:
        ingest_rate(model, overlapped, folder, 1)  # warm-up: tag encoder, caches, imports
        encode = encode_rate(model, folder, args.repeats)
        rates = {
            "sequential": ingest_rate(model, sequential, folder, args.repeats),
            "overlapped": ingest_rate(model, overlapped, folder, args.repeats),
        }
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"load {os.getloadavg()[0]:.1f}; model {model.config.architecture}; {SAMPLE.res=}"
    )
    print(f"encode alone: {encode:.1f} cells/s")
    for name, rate in rates.items():
        print(f"ingest {name}: {rate:.1f} cells/s = {rate / encode:.2f}x the encode rate")
        bench_record(
            "ingest",
            f"bundled sample, {name}",
            cells_per_s=round(rate, 2),
            encode_cells_per_s=round(encode, 2),
            vs_encode=round(rate / encode, 3),
        )


if __name__ == "__main__":
    main()
