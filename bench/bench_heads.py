"""Training a head straight from the store: read N stored vectors, join labels, split spatially, train,
evaluate.

Run: ./venv-run python bench/bench_heads.py [--rows 100000] [--dim 256] Target on the 2-core machine: <= 10 s
for 100k vectors and a linear probe. Baseline in the same run: reading the same vectors out of the store alone
(the floor any head pays).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from geolink_store.grid import parents
from geolink_store.heads.from_store import stored_vectors, train_from_store
from geolink_store.store.store import Store
from geolink_store.testing import bench_record, cells_table, h3_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cells = h3_grid(args.rows, res=9)
        store = Store.create_or_open(Path(tmp) / "db")
        store.register_model(
            "test-model", name="synthetic", architecture="none", config={}, text_encoder="none"
        )
        store.upsert("cells", cells_table(cells, args.dim), index=False)
        # labels follow the vectors' cluster structure (res-7 parents), 4 classes
        cluster = (
            parents(cells, 7) * 2654435761 % (2**31)
        ) % 48  # the cluster of each vector (synthetic_store)
        labels = pd.DataFrame({"h3": [f"{c:x}" for c in cells], "label": (cluster // 12).astype(str)})
        labels.to_csv(Path(tmp) / "labels.csv", index=False)

        start = time.perf_counter()
        stored_vectors(store, "cells", "test-model", "fused")
        read_only = time.perf_counter() - start
        for kind in ("linear", "mlp", "knn"):
            start = time.perf_counter()
            trained = train_from_store(store, Path(tmp) / "labels.csv", "label", modality="fused", kind=kind)
            seconds = time.perf_counter() - start
            print(
                f"{kind:<6} {args.rows} vectors x {args.dim}: {seconds:5.2f} s end to end "
                f"({seconds / read_only:4.1f}x the read-only baseline of {read_only:.2f} s), "
                f"test macro-F1 {trained.metrics['macro_f1']:.3f}, "
                f"majority {trained.metrics['majority_baseline']['macro_f1']:.3f}"
            )
            bench_record(
                "heads",
                kind,
                rows=args.rows,
                seconds=round(seconds, 3),
                vs_read_only=round(seconds / read_only, 2),
            )


if __name__ == "__main__":
    main()
