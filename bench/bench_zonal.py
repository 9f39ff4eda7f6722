"""Zonal statistics benchmark: ``zonal_stats`` (area-weighted mean/std per zone) over 1M cells and 10k zones,
beside the same-run baseline of a naive geopandas overlay + groupby on a subset of the zones (per-zone time
ratio, and the largest difference between the two results), and the ``cells_zonal`` SQL macro on that subset.

Real H3 res-9 cells around Kampala, SYNTHETIC clustered vectors (geolink_store.testing); zones are discs and
rotated boxes of 0.5-3 km placed at random inside the cells' extent.
Usage: python bench/bench_zonal.py [--rows 1000000] [--zones 10000] [--subset 200] [--dim 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from geolink_store.query.sql import run_sql
from geolink_store.query.zonal import zonal_stats
from geolink_store.store import Store
from geolink_store.testing import bench_record, cells_table, h3_grid

CHUNK = 100_000


def random_zones(n: int, bounds: tuple[float, float, float, float], seed: int = 0) -> gpd.GeoDataFrame:
    """``n`` discs and rotated boxes (0.5-3 km across) with their centres inside ``bounds`` (degrees)."""
    rng = np.random.default_rng(seed)
    west, south, east, north = bounds
    x, y = rng.uniform(west, east, n), rng.uniform(south, north, n)
    size = rng.uniform(0.0045, 0.027, n) / 2  # degrees, about 0.5-3 km at the equator
    discs = shapely.buffer(shapely.points(x, y), size, quad_segs=8)
    boxes = shapely.box(x - size, y - size / 2, x + size, y + size / 2)
    angle = rng.uniform(0, np.pi, n)
    rotated = [shapely.affinity.rotate(b, a, use_radians=True) for b, a in zip(boxes, angle, strict=True)]
    shapes = np.where(np.arange(n) % 2 == 0, discs, np.array(rotated, dtype=object))
    return gpd.GeoDataFrame({"zone": np.arange(n)}, geometry=shapes, crs=4326)


def overlay_baseline(cells: gpd.GeoDataFrame, vectors: np.ndarray, zones: gpd.GeoDataFrame) -> np.ndarray:
    """The naive way: overlay every hexagon with the zones, weigh by area share, group by zone."""
    warnings.filterwarnings("ignore", message="Geometry is in a geographic CRS")  # shares: ratios of areas
    cells = cells.assign(cell_area=cells.geometry.area)
    pieces = gpd.overlay(cells, zones, how="intersection", keep_geom_type=True)
    weights = pieces.geometry.area.to_numpy() / pieces["cell_area"].to_numpy()
    frame = pieces[["zone"]].assign(w=weights)
    weighted = vectors[pieces["row"].to_numpy()] * weights[:, None]
    sums = np.zeros((len(zones), vectors.shape[1]))
    np.add.at(sums, np.searchsorted(zones["zone"].to_numpy(), frame["zone"].to_numpy()), weighted)
    totals = frame.groupby("zone")["w"].sum().reindex(zones["zone"], fill_value=0).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / totals[:, None]


def _matrix(vectors: list, dim: int) -> np.ndarray:
    """Mean vectors as rows, NaN for a zone without cells."""
    return np.stack([np.full(dim, np.nan) if v is None else np.asarray(v, np.float64) for v in vectors])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--zones", type=int, default=10_000)
    parser.add_argument("--subset", type=int, default=200)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.create_or_open(Path(tmp) / "db")
        store.register_model(
            "test-model", name="synthetic", architecture="none", config={}, text_encoder="none"
        )
        cells = h3_grid(args.rows)
        began = time.perf_counter()
        for start in range(0, args.rows, CHUNK):
            store.upsert(
                "cells", cells_table(cells[start : start + CHUNK], args.dim, seed=start), index=False
            )
        print(f"store of {args.rows:,} cells ({args.dim}-d) written in {time.perf_counter() - began:.0f} s")
        rows = store.table("cells").to_arrow().select(["h3", "geometry", "fused", "lon", "lat"])
        bounds = (*np.quantile(rows["lon"], [0.1, 0.9]), *np.quantile(rows["lat"], [0.1, 0.9]))
        zones = random_zones(args.zones, (bounds[0], bounds[2], bounds[1], bounds[3]))
        began = time.perf_counter()
        result = zonal_stats(store, zones, stats=["mean", "std"])
        api_s = time.perf_counter() - began
        print(
            f"zonal_stats: {args.zones:,} zones in {api_s:.1f} s "
            f"({api_s / args.zones * 1e3:.2f} ms per zone), "
            f"{result['n_cells'].mean():.0f} cells per zone on average"
        )
        bench_record(
            "zonal", "zonal_stats", rows=args.rows, zones=args.zones, dim=args.dim, seconds=round(api_s, 2)
        )

        subset = zones.iloc[: args.subset]
        hexagons = gpd.GeoDataFrame(
            {"row": np.arange(rows.num_rows)},
            geometry=gpd.GeoSeries.from_wkb(rows["geometry"].to_pylist()),
            crs=4326,
        )
        nearby = hexagons.iloc[hexagons.sindex.query(subset.geometry.union_all(), predicate="intersects")]
        vectors = np.stack(rows["fused"].to_numpy(zero_copy_only=False))
        began = time.perf_counter()
        expected = overlay_baseline(nearby.reset_index(drop=True), vectors, subset)
        base_s = time.perf_counter() - began
        got = _matrix(list(result["fused_mean"].iloc[: args.subset]), args.dim)
        diff = float(np.nanmax(np.abs(got - expected)))
        ratio = (base_s / args.subset) / (api_s / args.zones)
        print(
            f"baseline geopandas overlay + groupby: {args.subset} zones in {base_s:.1f} s "
            f"({base_s / args.subset * 1e3:.1f} ms per zone, candidates pre-selected by R-tree): "
            f"zonal_stats is {ratio:.1f}x faster per zone; max |mean difference| {diff:.1e}"
        )
        bench_record(
            "zonal",
            "baseline geopandas overlay",
            zones=args.subset,
            seconds=round(base_s, 2),
            per_zone_ratio=round(ratio, 2),
            max_abs_diff=diff,
        )

        path = Path(tmp) / "subset.geojson"
        subset.to_file(path)
        began = time.perf_counter()
        sql = run_sql(store.path, "SELECT * FROM cells_zonal('zones') ORDER BY zone", files={"zones": path})
        sql_s = time.perf_counter() - began
        sql_diff = float(np.nanmax(np.abs(_matrix(sql["fused_mean"].to_pylist(), args.dim) - got)))
        print(
            f"cells_zonal SQL macro: {args.subset} zones in {sql_s:.1f} s "
            f"({sql_s / args.subset * 1e3:.1f} ms per zone); "
            f"max |mean difference| to zonal_stats {sql_diff:.1e}"
        )
        bench_record(
            "zonal", "cells_zonal sql", zones=args.subset, seconds=round(sql_s, 2), max_abs_diff=sql_diff
        )


if __name__ == "__main__":
    main()
