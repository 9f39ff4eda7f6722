"""Helpers shared by the tests and the benchmarks: synthetic stores and machine-readable bench records.

Synthetic but realistic store rows: REAL H3 cells, SYNTHETIC clustered vectors. The cells are a true H3 grid
(children of a disk of coarse cells around a real place); the vectors are not model outputs but follow the
structure embeddings have: land-cover-like clusters that are spatially coherent (a coarse parent cell picks
its cluster), sub-clusters inside each cluster, and per-cell noise.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from os import PathLike

import numpy as np
import pyarrow as pa
import shapely

from geolink_store import grid
from geolink_store.constants import DEFAULT_EPOCH
from geolink_store.store import Store, cells_schema, parent_column, parent_resolutions

KAMPALA = (32.58, 0.32)  # lon, lat


def h3_grid(n: int, res: int = 9, center: tuple[float, float] = KAMPALA) -> np.ndarray:
    """At least ``n`` real H3 cells (int64, sorted) at ``res``: all children of a disk of coarser cells."""
    coarse_res = max(res - 4, 0)
    per_coarse = 7 ** (res - coarse_res)
    k = 0
    while 1 + 3 * k * (k + 1) < -(-n // per_coarse):
        k += 1
    coarse = grid.disk(grid.points_to_cells([center[0]], [center[1]], coarse_res)[0], k)
    cells = grid.children(coarse, res)
    return np.sort(cells)[:n] if n else np.empty(0, np.int64)


def clustered_vectors(
    cells: np.ndarray,
    dim: int,
    *,
    seed: int = 0,
    n_clusters: int = 48,
    n_sub: int = 12,
    sub_scale: float = 0.5,
    noise: float = 0.3,
) -> np.ndarray:
    """Unit-norm float32 vectors [len(cells), dim]: cluster by the res-(r-2) parent, sub-cluster, noise."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    subs = rng.standard_normal((n_clusters, n_sub, dim)).astype(np.float32) * sub_scale
    res = grid.resolution(cells[0])
    parents = grid.parents(cells, max(res - 2, 0))
    cluster = (parents * 2654435761 % (2**31)) % n_clusters
    sub = rng.integers(0, n_sub, len(cells))
    vectors = (
        centers[cluster]
        + subs[cluster, sub]
        + rng.standard_normal((len(cells), dim)).astype(np.float32) * noise
    )
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def cells_table(
    cells: np.ndarray,
    dim: int = 16,
    *,
    model_id: str = "test-model",
    seed: int = 0,
    with_osm: bool = True,
    epoch: str = DEFAULT_EPOCH,
) -> pa.Table:
    """A ``cells`` table (store schema) for ``cells``: real H3 geometry and centres, synthetic vectors."""
    res = grid.resolution(cells[0])
    lon, lat = grid.cell_lonlat(cells)
    image = clustered_vectors(cells, dim, seed=seed)
    columns = {
        "h3": cells,
        "res": np.full(len(cells), res, np.int8),
        **{parent_column(k): grid.parents(cells, k) for k in parent_resolutions(res)},
        "lon": lon,
        "lat": lat,
        "geometry": shapely.to_wkb(grid.cell_geometries(cells)),
        "image": list(image),
        "osm": list(clustered_vectors(cells, dim, seed=seed + 1)) if with_osm else [None] * len(cells),
        "fused": list(clustered_vectors(cells, dim, seed=seed + 2)),
        "n_point": np.zeros(len(cells), np.int32),
        "n_line": np.zeros(len(cells), np.int32),
        "n_polygon": np.zeros(len(cells), np.int32),
        "source": ["synthetic"] * len(cells),
        "model_id": [model_id] * len(cells),
        "created_at": [datetime(2025, 1, 1, tzinfo=UTC)] * len(cells),
        "epoch": [epoch] * len(cells),
        "acquired": [None] * len(cells),
    }
    return pa.Table.from_pydict(columns, schema=cells_schema(dim, dim, dim, res))


def synthetic_store(
    path: str | PathLike, n: int = 2000, dim: int = 16, res: int = 9
) -> tuple[Store, pa.Table]:
    """A store at ``path`` holding ``n`` synthetic cells (see :func:`cells_table`) and their model row."""
    table = cells_table(h3_grid(n, res), dim)
    store = Store.create_or_open(path)
    store.register_model(
        "test-model", name="synthetic", architecture="none", config={"dim": dim}, text_encoder="none"
    )
    store.upsert("cells", table)
    return store, table


def brute_force(table: pa.Table, query: np.ndarray, column: str = "fused") -> np.ndarray:
    """Cosine distances from ``query`` to every row of ``table[column]`` (exact, numpy)."""
    vectors = np.stack(table[column].to_numpy(zero_copy_only=False))
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return 1.0 - vectors @ (query / np.linalg.norm(query))


def bench_record(bench: str, case: str, **figures: float | int | str) -> None:
    """Print one benchmark figure as a JSON line (``{"bench", "case", "machine", ...figures}``) on stdout.

    Every bench script prints its human-readable table and, beside it, one record per measured case, so that
    runs can be collected and compared by a program.
    """
    machine = f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip()
    record = {"bench": bench, "case": case, "machine": machine, **figures}
    sys.stdout.write(json.dumps(record) + "\n")
