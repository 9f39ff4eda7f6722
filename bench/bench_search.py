"""Search benchmark: upsert rows/s, index build time, search p50/p95 and recall@10 vs exact numpy search.

Real H3 cells (res 9 around Kampala), SYNTHETIC clustered unit vectors (tests/synthetic_store.py), width 256.
Usage: python bench/bench_search.py [--rows 100000 1000000] [--queries 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from geolink_store.query.reader import TableReader
from geolink_store.query.search import nearest, search
from geolink_store.store.store import Store
from geolink_store.testing import bench_record, cells_table, h3_grid

CHUNK = 100_000


def build(path: Path, rows: int, dim: int) -> tuple[Store, np.ndarray, np.ndarray, float]:
    """Write ``rows`` cells in chunks; returns the store, cells, fused vectors and upsert seconds."""
    store = Store.create_or_open(path)
    cells = h3_grid(rows)
    vectors, seconds = [], 0.0
    for start in range(0, rows, CHUNK):
        chunk = cells_table(cells[start : start + CHUNK], dim, seed=start, with_osm=False)
        vectors.append(np.stack(chunk["fused"].to_numpy(zero_copy_only=False)))
        began = time.perf_counter()
        store.upsert("cells", chunk, index=False)
        seconds += time.perf_counter() - began
    return store, cells, np.concatenate(vectors), seconds


def measure(rows: int, dim: int, queries: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, cells, vectors, upsert_s = build(Path(tmp) / "db", rows, dim)
        began = time.perf_counter()
        built = store.build_indexes()
        index_s = time.perf_counter() - began
        picks = np.random.default_rng(0).choice(rows, queries, replace=False)
        table = TableReader(store, "cells")
        latencies, ann_latencies, exact_latencies, recalls = [], [], [], []
        for i in picks:
            began = time.perf_counter()
            exact = np.argsort(1.0 - vectors @ vectors[i])[:11]
            exact_latencies.append(time.perf_counter() - began)
            truth = set(cells[exact[exact != i][:10]].tolist())
            began = time.perf_counter()
            found = search(store, cells=int(cells[i]), k=10, model_id="test-model")
            latencies.append(time.perf_counter() - began)
            recalls.append(len(truth & set(found["h3"].tolist())) / 10)
            began = time.perf_counter()
            nearest(table, vectors[i], "fused", None, 10, exact=not built)
            ann_latencies.append(time.perf_counter() - began)
        p50, p95 = np.percentile(latencies, [50, 95]) * 1e3
        e50 = np.percentile(exact_latencies, 50) * 1e3
        a50, a95 = np.percentile(ann_latencies, [50, 95]) * 1e3
        print(
            f"rows={rows} dim={dim} upsert={rows / upsert_s:,.0f} rows/s index({','.join(built) or 'none'})="
            f"{index_s:.1f}s search() p50={p50:.1f}ms p95={p95:.1f}ms "
            f"vector-in p50={a50:.1f}ms p95={a95:.1f}ms "
            f"recall@10={np.mean(recalls):.3f} "
            f"numpy-exact p50={e50:.1f}ms (ratio {p50 / e50:.2f})",
            flush=True,
        )
        bench_record(
            "search",
            f"{rows} rows x {dim}",
            p50_ms=round(p50, 2),
            exact_numpy_p50_ms=round(e50, 2),
            recall_at_10=round(float(np.mean(recalls)), 4),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    for rows in args.rows:
        measure(rows, args.dim, args.queries)


if __name__ == "__main__":
    main()
