"""SQL benchmark: DuckDB aggregate by H3 parent over the store's cells, against pyarrow's group_by in the same
run.

Real H3 cells (res 9 around Kampala), SYNTHETIC clustered vectors (tests/synthetic_store.py), width 256.
Usage: python bench/bench_sql.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from geolink_store.query.sql import SqlSession
from geolink_store.store.store import Store
from geolink_store.testing import bench_record, cells_table, h3_grid

QUERIES = {
    "count+avg by h3_r6": "SELECT h3_r6, count(*) AS n, avg(lat) AS lat FROM cells GROUP BY h3_r6",
    "count by h3_r4 and model": "SELECT h3_r4, model_id, count(*) AS n FROM cells GROUP BY ALL",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.create_or_open(Path(tmp) / "db")
        cells = h3_grid(args.rows)
        for start in range(0, args.rows, 100_000):
            store.upsert(
                "cells",
                cells_table(cells[start : start + 100_000], args.dim, seed=start, with_osm=False),
                index=False,
            )
        began = time.perf_counter()
        session = SqlSession(store.path)
        print(f"session setup (2 extensions, views): {time.perf_counter() - began:.2f}s")
        arrow_rows = store.table("cells").to_arrow().select(["h3_r6", "lat"])
        for name, sql in QUERIES.items():
            times = []
            for _ in range(args.repeats):
                began = time.perf_counter()
                result = session.query(sql)
                times.append(time.perf_counter() - began)
            print(f"{name}: {args.rows} rows -> {result.num_rows} groups, median {np.median(times):.3f}s")
            bench_record("sql", name, rows=args.rows, median_s=round(float(np.median(times)), 4))
        began = time.perf_counter()
        arrow_rows.group_by("h3_r6").aggregate([("lat", "mean"), ("lat", "count")])
        print(
            f"baseline pyarrow group_by on an in-memory table (no scan): {time.perf_counter() - began:.3f}s"
        )
        began = time.perf_counter()
        session.query("SELECT count(*) FROM cells_rollup(6, modality := 'fused')")
        print(f"cells_rollup(6) mean {args.dim}-d vector per parent: {time.perf_counter() - began:.2f}s")
        session.close()


if __name__ == "__main__":
    main()
