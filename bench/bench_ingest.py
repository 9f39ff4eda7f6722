"""End-to-end ingest throughput (cells/s) of the bundled sample beside the model's own encode rate, one run.

Run: .venv/bin/python bench/bench_ingest.py [--repeats 7] [--model CKPT] [--stand-in]
Cases, run in turn ``--repeats`` rounds (interleaved, so that a shared machine's drift hits all alike), each
ingest into a fresh store, after one warm-up ingest that loads the tag encoder; best and median reported:

- encode alone: ``GeoLink.encode`` of the very chips and graphs the ingest makes (read and built beforehand,
  not timed), batch 16: the ceiling of any ingest;
- ingest, sequential: :class:`LocalEngine` with ``prefetch=0`` and a commit per batch (how it ran before);
- ingest, grouped commits: no worker threads, rows committed per 1,024 cells (the default on a CPU whose every
  core runs torch);
- ingest, overlapped: :class:`LocalEngine` with ``prefetch=2`` (chips read and graphs built in a worker thread
  two batches ahead, rows shaped and committed per 1,024 cells in another; the default beside an accelerator).

``ingest / encode`` is the share of the encode rate an ingest keeps (target >= 0.85). Every ingest includes
the plan (imagery opened, OSM checked, store listed), the commits and the closing optimize.

Without a GPU, ``--stand-in`` adds both ingests with an accelerator stand-in: the model's ``encode`` replaced
by a wait as long as the real encode of that batch took (measured beforehand), then its real outputs.
Like a GPU, it leaves the CPU (and the GIL) to the rest of the pipeline, so it shows how much of the CPU side
the read-ahead hides when the encode does not compete for the cores.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

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


def ingest_rate(model: GeoLink, engine: LocalEngine, db: str) -> float:
    """The cells/s of a whole ingest of the sample into the fresh store ``db``."""
    start = time.perf_counter()
    report = ingest(
        db,
        SAMPLE.region,
        [str(SAMPLE.imagery)],
        str(SAMPLE.osm),
        model=model,
        settings=IngestSettings(res=SAMPLE.res, fine_res=SAMPLE.fine_res),
        engine=engine,
    )
    return report.cells_encoded / (time.perf_counter() - start)


def sample_batches(model: GeoLink, folder: str) -> list[tuple[ImageBatch, torch.Tensor]]:
    """The image batches an ingest of the sample makes, each with its stacked chips."""
    settings = IngestSettings(res=SAMPLE.res, fine_res=SAMPLE.fine_res)
    plan = plan_ingest(
        f"{folder}/batches",
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
    return [(batch, torch.from_numpy(np.stack([chip.image for chip in batch.chips]))) for batch in batches]


def encoder(model: GeoLink, folder: str) -> Callable[[], float]:
    """A function giving the cells/s of ``model.encode`` alone on the sample's own chips and graphs."""
    batches = sample_batches(model, folder)
    cells = sum(len(batch.chips) for batch, _ in batches)
    dtype = encode_dtype(model)

    @torch.no_grad()
    def rate() -> float:
        start = time.perf_counter()
        for batch, images in batches:
            model.encode(images, batch.graphs, dtype=dtype)
        return cells / (time.perf_counter() - start)

    return rate


def stand_in(model: GeoLink, folder: str) -> tuple[GeoLink, float]:
    """The model with ``encode`` replaced by an accelerator stand-in (see the module docstring).

    Each batch's outputs and encode time are measured once on the sample's own batches, keyed by the batch's
    first pixels. Also returns the stand-in's encode rate (cells/s).
    """
    outputs: dict[bytes, tuple[object, float]] = {}
    cells = 0
    for batch, images in sample_batches(model, folder):
        start = time.perf_counter()
        with torch.no_grad():
            out = model.encode(images, batch.graphs, dtype=encode_dtype(model))
        outputs[_key(images)] = out, time.perf_counter() - start
        cells += len(batch.chips)
    waiting = copy.copy(model)

    def encode(images: torch.Tensor, graphs: object = None, **_: object) -> object:
        out, seconds = outputs[_key(images)]
        time.sleep(seconds)
        return out

    waiting.encode = encode
    return waiting, cells / sum(seconds for _, seconds in outputs.values())


def encode_dtype(model: GeoLink) -> torch.dtype:
    """The dtype an ingest encodes in on the model's device."""
    return IngestSettings().dtype(next(model.parameters()).device)


def _key(images: torch.Tensor) -> bytes:
    return images[:, 0, 0, :16].numpy().tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--model", help="a checkpoint (default: the bundled default model)")
    parser.add_argument("--stand-in", action="store_true", help="also ingest with an accelerator stand-in")
    args = parser.parse_args()
    model = (GeoLink.from_checkpoint(args.model) if args.model else GeoLink.default()).eval()
    engines = {
        "sequential": LocalEngine(prefetch=0, commit_cells=1),
        "grouped commits": LocalEngine(prefetch=0),
        "overlapped": LocalEngine(prefetch=2),
    }
    rates: dict[str, list[float]] = {"encode": []}
    with tempfile.TemporaryDirectory() as folder:
        ingest_rate(model, engines["overlapped"], f"{folder}/warm-up")  # tag encoder, caches, imports
        encode = encoder(model, folder)
        models = {"": model}
        if args.stand_in:
            models["stand-in "], stand_in_rate = stand_in(model, folder)
            rates["stand-in encode"] = [stand_in_rate]
        for round_ in range(args.repeats):
            rates["encode"].append(encode())
            for prefix, encoding in models.items():
                for name, engine in engines.items():
                    db = f"{folder}/{prefix}{name}-{round_}"
                    rates.setdefault(prefix + name, []).append(ingest_rate(encoding, engine, db))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"load {os.getloadavg()[0]:.1f}; model {model.config.architecture}; {SAMPLE.res=}; "
        f"{args.repeats} rounds"
    )
    best = {name: max(values) for name, values in rates.items()}
    median = {name: statistics.median(values) for name, values in rates.items()}
    for prefix in models:
        base = f"{prefix}encode"
        print(f"{base} alone: best {best[base]:.1f}, median {median[base]:.1f} cells/s")
        for name in (prefix + engine for engine in engines):
            print(
                f"ingest {name}: best {best[name]:.1f} cells/s = {best[name] / best[base]:.2f}x the encode "
                f"rate; median {median[name]:.1f} = {median[name] / median[base]:.2f}x"
            )
            bench_record(
                "ingest",
                f"bundled sample, {name}",
                cells_per_s=round(median[name], 2),
                encode_cells_per_s=round(median[base], 2),
                vs_encode=round(median[name] / median[base], 3),
                best_vs_encode=round(best[name] / best[base], 3),
            )


if __name__ == "__main__":
    main()
