"""Ray engine scaling: 1 against 2 workers on this machine, with the local engine as the same-run baseline.

Run: ./venv-run python bench/bench_ray_ingest.py [--res 13] [--repeats 2]
The bundled Kampala sample at resolution 13 (509 cells in 19 partitions: resolution-11 parents) is encoded
into a fresh store per run. One local Ray instance is started first (not timed); each timed Ray run includes
starting its actors (model and tag encoder load), encoding, writing fragments and the commit. Every run's rows
are checked against the local engine's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from geolink_store.pipeline import IngestSettings, RayEngine, ingest
from geolink_store.sample import kampala_sample
from geolink_store.store import Store
from geolink_store.testing import bench_record
from model import GeoLink


def _fused(db: Path) -> np.ndarray:
    cells = Store.open(db).table("cells").to_arrow().sort_by("h3")
    return np.stack(cells["fused"].to_numpy(zero_copy_only=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sample = kampala_sample()
    model = GeoLink.default()
    settings = IngestSettings(res=args.res, fine_res=args.res + 1, partition_levels=2)
    inputs = (sample.region, [str(sample.imagery)], str(sample.osm))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    runs = {
        "local engine (1 process, 2 torch threads)": lambda db: ingest(
            db, *inputs, model=model, settings=settings
        ),
        **{
            f"ray, {n} worker{'s' if n > 1 else ''} x 1 core": lambda db, n=n: ingest(
                db, *inputs, model=model, settings=settings, engine=RayEngine(workers=n)
            )
            for n in (1, 2)
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        ingest(f"{tmp}/warm", *inputs, model=model, settings=settings)  # fills the on-disk tag cache
        reference = _fused(Path(f"{tmp}/warm"))
        best: dict[str, float] = {}
        for repeat in range(args.repeats):
            for name, run in runs.items():
                db = Path(tmp) / f"{repeat}-{len(best)}-{name.split()[0]}-{time.monotonic_ns()}"
                start = time.perf_counter()
                report = run(str(db))
                seconds = time.perf_counter() - start
                assert np.allclose(_fused(db), reference, atol=1e-5), name
                best[name] = min(best.get(name, float("inf")), seconds)
        cells = report.cells_encoded
    ray.shutdown()
    one = best["ray, 1 worker x 1 core"]
    print(f"{cells} cells at res {args.res} (+ {report.patches_written} patch rows), best of {args.repeats}:")
    for name, seconds in best.items():
        print(
            f"  {name:45s} {seconds:6.1f} s  {cells / seconds:5.1f} cells/s  "
            f"speed-up vs 1 worker {one / seconds:.2f}x"
        )
        bench_record(
            "ray_ingest", name, cells_per_s=round(cells / seconds, 2), vs_one_worker=round(one / seconds, 3)
        )


if __name__ == "__main__":
    main()
