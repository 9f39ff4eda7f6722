"""int8 vectors (per-vector scale) against float32, same run: bytes on disk, search recall@10, linear probe.

Rows: real H3 res-9 cells around Kampala with SYNTHETIC clustered unit vectors (``geolink_store.testing``),
width 256, written as two real Lance datasets: ``h3`` + float32 ``fused``, and ``h3`` + ``fused_i8`` +
``fused_scale`` (:func:`geolink_store.store.quantize.quantized_columns`). Search: exact cosine top-10 of
``--queries`` stored vectors, read back from each dataset (the int8 codes as they are: the scale cancels),
against the float32 truth. Linear probe: ``geolink_store.heads.train.train_head`` (kind linear) on 48 noisy
classes (class centre + noise, unit-normalised), 75/25 random split, on float32 and on the dequantised int8
vectors of the same rows.

Store case, the same run: ``--store-rows`` real res-9 cells (``geolink_store.testing.cells_table``:
clustered ``image`` and ``osm`` vectors, ``fused`` holding the probe's noisy class vectors) written by
``Store.upsert`` into three stores, one per layout (float32, int8, both), read back through its readers:
``geolink_store.query.search.search_hits`` (modality image, k 10, exact: the tables stay below the ANN index
threshold) against the exact float32 top-10, and a linear head on ``heads.from_store.stored_vectors``.
Usage: python bench/bench_int8.py [--rows 200000] [--dim 256] [--queries 200] [--store-rows 40000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from geolink_store.constants import CELLS
from geolink_store.heads.from_store import stored_vectors
from geolink_store.heads.train import random_split, train_head
from geolink_store.query.search import search_hits
from geolink_store.store import Store
from geolink_store.store.quantize import VECTOR_LAYOUTS, dequantize, quantize, quantized_columns, with_layout
from geolink_store.store.schema import VECTOR_COLUMNS
from geolink_store.testing import bench_record, cells_table, clustered_vectors, h3_grid

CLASSES = 48
SHORTLIST = 40
"""int8 candidates re-ranked with the float32 vectors (int8 stored beside float32)."""
NOISE = 6.0
"""Noise around the probe's class centres: enough that the probe is far from perfect."""


def folder_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def top10(matrix: np.ndarray, picks: np.ndarray, rerank: np.ndarray | None = None) -> list[set[int]]:
    """Per picked row, the 10 other rows of highest cosine similarity in ``matrix``; with ``rerank``, the
    best 10 by ``rerank``'s vectors among ``matrix``'s best :data:`SHORTLIST`."""
    unit = _unit(matrix)
    exact = None if rerank is None else _unit(rerank)
    found = []
    for i in picks:
        order = np.argsort(-(unit @ unit[i]))[: SHORTLIST + 1]
        order = order[order != i]
        if exact is not None:
            order = order[np.argsort(-(exact[order] @ exact[i]))]
        found.append(set(order[:10].tolist()))
    return found


def probe_accuracy(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Held-out accuracy of a linear head (fixed seed and split)."""
    split = random_split(len(labels), 0.25, seed=0)
    head = train_head(vectors[split.train], labels[split.train], [str(c) for c in range(CLASSES)])
    predicted, _ = head.predict(vectors[split.test])
    return float((predicted == labels[split.test]).mean())


def noisy_classes(rows: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels [rows] of :data:`CLASSES` classes and unit vectors [rows, dim]: class centre plus noise."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, CLASSES, rows)
    centres = rng.standard_normal((CLASSES, dim)).astype(np.float32)
    noisy = centres[labels] + NOISE * rng.standard_normal((rows, dim)).astype(np.float32)
    return labels, noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def store_case(rows: int, dim: int, queries: int) -> None:
    """Bytes, search recall@10 and latency, and head accuracy through three stores of the same cells."""
    cells = h3_grid(rows)
    labels, noisy = noisy_classes(rows, dim)
    table = cells_table(cells, dim)
    table = table.set_column(
        table.schema.get_field_index("fused"), "fused", pa.array(list(noisy), table["fused"].type)
    )
    image = np.asarray(table["image"].combine_chunks().flatten()).reshape(-1, dim)
    picks = np.random.default_rng(2).choice(rows, queries, replace=False)
    truth = top10(image, picks)
    position = {int(cell): i for i, cell in enumerate(cells)}
    sizes, found = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for layout in VECTOR_LAYOUTS:
            store = Store.create_or_open(Path(tmp) / layout)
            store.upsert(CELLS, with_layout(table, VECTOR_COLUMNS[CELLS], layout), index=False)
            sizes[layout] = folder_bytes(Path(store.table_uri(CELLS)))
            times, recalls = [], []
            for pick, expected in zip(tqdm(picks, desc=f"search {layout}"), truth, strict=True):
                began = time.perf_counter()
                hits = search_hits(store, cells=int(cells[pick]), k=10, modality="image").rows
                times.append(time.perf_counter() - began)
                recalls.append(len(expected & {position[cell] for cell in hits["h3"].to_pylist()}) / 10)
            ids, vectors = stored_vectors(store, CELLS, store.default_model(), "fused")
            accuracy = probe_accuracy(vectors, labels[[position[int(cell)] for cell in ids]])
            found[layout] = {"recall": float(np.mean(recalls)), "p50_ms": 1e3 * float(np.median(times))}
            found[layout]["accuracy"] = accuracy
    print(f"store case: {rows:,} cells, 3 vectors x {dim} each, {queries} queries through geolink search")
    for layout in VECTOR_LAYOUTS:
        f = found[layout]
        print(
            f"  {layout:7} cells table {sizes[layout]:,} bytes ({sizes[layout] / sizes['float32']:.1%}), "
            f"recall@10 {f['recall']:.4f}, p50 {f['p50_ms']:.1f} ms, head accuracy {f['accuracy']:.4f}"
        )
    bench_record("int8", "store cells bytes", rows=rows, dim=dim, **sizes)
    for layout in VECTOR_LAYOUTS:
        bench_record(
            "int8",
            f"store {layout}",
            rows=rows,
            recall_at_10=round(found[layout]["recall"], 4),
            search_p50_ms=round(found[layout]["p50_ms"], 1),
            head_accuracy=round(found[layout]["accuracy"], 4),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--store-rows", type=int, default=40_000, help="0: skip the store case")
    args = parser.parse_args()
    cells = h3_grid(args.rows)
    vectors = clustered_vectors(cells, args.dim)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), args.dim)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        int8 = quantized_columns("fused", column)
        quantize_s = time.perf_counter() - began
        plain = lance.write_dataset(pa.table({"h3": cells, "fused": column}), f"{tmp}/float32.lance")
        small = lance.write_dataset(pa.table({"h3": cells, **int8}), f"{tmp}/int8.lance")
        sizes = {name: folder_bytes(Path(tmp) / f"{name}.lance") for name in ("float32", "int8")}
        stored = plain.to_table(columns=["fused"])["fused"].combine_chunks()
        read_float = np.asarray(stored.flatten()).reshape(-1, args.dim)
        read_small = small.to_table(columns=["fused_i8", "fused_scale"])
        codes = np.asarray(read_small["fused_i8"].combine_chunks().flatten()).reshape(-1, args.dim)
        scales = read_small["fused_scale"].to_numpy()
    picks = np.random.default_rng(0).choice(args.rows, args.queries, replace=False)
    truth = top10(read_float, picks)
    found = top10(codes.astype(np.float32), picks)
    recall = float(np.mean([len(t & f) / 10 for t, f in zip(truth, found, strict=True)]))
    shortlisted = top10(codes.astype(np.float32), picks, rerank=read_float)
    recall_rerank = float(np.mean([len(t & f) / 10 for t, f in zip(truth, shortlisted, strict=True)]))
    labels, noisy = noisy_classes(args.rows, args.dim)
    noisy_back = dequantize(*quantize(noisy))
    accuracy = {"float32": probe_accuracy(noisy, labels), "int8": probe_accuracy(noisy_back, labels)}
    error = float(np.abs(dequantize(codes, scales) - read_float).max())
    saved = 1 - sizes["int8"] / sizes["float32"]
    print(f"{args.rows:,} rows x {args.dim}, {args.queries} queries; quantising took {quantize_s:.2f} s")
    print(f"Lance bytes: float32 {sizes['float32']:,}  int8 {sizes['int8']:,}  saved {saved:.1%}")
    print(f"exact cosine recall@10 of int8 against float32: {recall:.4f}; max |error| {error:.2e}")
    print(f"int8 top-{SHORTLIST} re-ranked with float32: recall@10 {recall_rerank:.4f}")
    print(f"linear probe accuracy ({CLASSES} classes): ", *(f"{k} {v:.4f}" for k, v in accuracy.items()))
    bench_record("int8", "lance bytes", rows=args.rows, dim=args.dim, **sizes, saved=round(saved, 4))
    bench_record(
        "int8", "exact search recall@10 vs float32", recall_at_10=round(recall, 4), queries=args.queries
    )
    bench_record("int8", "linear probe accuracy", **{k: round(v, 4) for k, v in accuracy.items()})
    if args.store_rows:
        store_case(args.store_rows, args.dim, args.queries)


if __name__ == "__main__":
    main()
