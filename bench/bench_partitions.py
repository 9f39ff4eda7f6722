"""Splitting a large region into partitions (the work units of both engines) at city scale.

Run: ./venv-run python bench/bench_partitions.py [--res 11]
A real H3 grid around Kampala (0.4 x 0.4 degrees: ~836k cells at res 11), 90 % of it covered by imagery.
Measured: the partitions with their covered cells, from one membership test over the whole region. Baseline in
the same run: a membership test of each partition against all covered cells (what ingest did before), timed on
50 partitions and scaled to all of them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from geolink_store.grid import region_cells
from geolink_store.pipeline.plan import partition_cells
from geolink_store.testing import bench_record

BASELINE_SAMPLE = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=11)
    args = parser.parse_args()
    cells = region_cells("32.40,0.20,32.80,0.60", args.res)
    rng = np.random.default_rng(0)
    covered = np.sort(rng.choice(cells, int(cells.size * 0.9), replace=False))

    start = time.perf_counter()
    partitions = list(partition_cells(cells, np.isin(cells, covered), args.res, 3))
    grouped = time.perf_counter() - start

    start = time.perf_counter()
    for partition in partitions[:BASELINE_SAMPLE]:
        assert np.array_equal(partition.cells[np.isin(partition.cells, covered)], partition.imaged)
    per_partition = (time.perf_counter() - start) / BASELINE_SAMPLE * len(partitions)
    print(
        f"{cells.size:,} cells in {len(partitions):,} partitions: {grouped:.2f} s; baseline (membership per "
        f"partition) {per_partition:.0f} s = {per_partition / grouped:.0f}x slower"
    )
    bench_record(
        "partitions", f"{cells.size} cells", seconds=round(grouped, 3), baseline_s=round(per_partition, 1)
    )


if __name__ == "__main__":
    main()
