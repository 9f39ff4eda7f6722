"""``change_scores`` on a synthetic two-epoch store of 1M cells, beside the same-run baseline of the
``cells_change`` SQL macro (the plain cosine distance of every pair, sorted, in DuckDB over the same tables).

Real H3 res-9 cells around Kampala, SYNTHETIC clustered vectors (geolink_store.testing): epoch ``2020`` is
epoch ``2010`` shifted all alike plus noise. Best of ``--repeat`` runs each.
Usage: python bench/bench_change.py [--rows 1000000] [--dim 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from geolink_store.query.change import change_scores
from geolink_store.query.sql import run_sql
from geolink_store.store import Store
from geolink_store.testing import bench_record, cells_table, h3_grid

CHUNK = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cells = h3_grid(args.rows, 9)
    shift = np.random.default_rng(0).standard_normal(args.dim).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="geolink-bench-change-") as work:
        store = Store.create_or_open(Path(work) / "db")
        for start in range(0, args.rows, CHUNK):
            part = cells[start : start + CHUNK]
            store.upsert("cells", cells_table(part, args.dim, seed=start, epoch="2010"), index=False)
            later = cells_table(part, args.dim, seed=start, epoch="2020")
            image = np.stack(later["image"].to_numpy(zero_copy_only=False)) + shift
            image += 0.1 * np.random.default_rng(start).standard_normal(image.shape).astype(np.float32)
            column = pa.FixedSizeListArray.from_arrays(pa.array(image.ravel()), args.dim)
            later = later.set_column(later.schema.get_field_index("image"), "image", column)
            store.upsert("cells", later, index=False)
        store.optimize()
        timings = {
            "change_scores (score + distance, sorted)": lambda: change_scores(store, "2010", "2020"),
            "SQL cells_change (distance, sorted)": lambda: run_sql(
                Path(work) / "db",
                "SELECT h3, image_distance FROM cells_change('2010', '2020') ORDER BY image_distance DESC",
            ),
        }
        best = {}
        for name, run in timings.items():
            seconds = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                rows = len(run())
                seconds.append(time.perf_counter() - started)
            best[name] = min(seconds)
            assert rows == args.rows, (name, rows)
        baseline = best["SQL cells_change (distance, sorted)"]
        print(f"{args.rows:,} cells x 2 epochs, {args.dim}-d image vectors (best of {args.repeat})")
        print(f"{'case':<45} {'s':>7} {'x SQL':>7}")
        for name, value in best.items():
            print(f"{name:<45} {value:7.2f} {value / baseline:7.2f}")
            bench_record("bench_change", name, rows=args.rows, dim=args.dim, seconds=round(value, 3),
                         vs_sql=round(value / baseline, 3))  # fmt: skip


if __name__ == "__main__":
    main()
