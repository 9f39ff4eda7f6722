"""Regions to H3 cells (seconds) on real boundaries, by centre and touching, beside H3 and srai, one run.

Run: PYTHONPATH=/work/envs/baselines .venv/bin/python bench/bench_regions.py [--repeats 3]
(srai and h3ronpy are optional same-run baselines, installed outside the project env, e.g. ``pip install
--target /work/envs/baselines --no-deps srai h3ronpy``; without them they are reported absent.)

Regions: Berlin's city boundary (bench/data/berlin.geojson: its twelve districts unioned, 5,395 vertices,
CC BY 3.0 DE) at res 10-11, Monaco's six quarters unioned (OSM admin_level 10 from
../shared/data/osm/monaco.osm.pbf, 563 vertices with the coast) at res 12-14, Czechia's national border
(Natural Earth 1:110m, shipped with pyogrio's test data), and a 0.4 x 0.4 degree box at Kampala. Cases, each
best of ``--repeats``: ours (``region_cells``, sorted ``int64``), h3-py's ``h3shape_to_cells_experimental``
(what ``region_cells`` called before), srai's ``shapely_geometry_to_h3`` (its public core, hex strings out)
and h3ronpy's ``wkb_to_cells`` (the Rust fill srai calls, ``Covers`` or ``ContainsCentroid``). Every cell set
is checked equal to ours. Memory: tracemalloc peak of ours.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from h3.api import basic_int as h3

from geolink_store.grid import region_cells
from geolink_store.testing import bench_record

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BERLIN = Path(__file__).resolve().parent / "data" / "berlin.geojson"
NATURAL_EARTH = Path(pyogrio.__file__).parent / "tests" / "fixtures" / "naturalearth_lowres"


def regions() -> list[tuple[str, shapely.Geometry, tuple[int, ...]]]:
    """(name, lon/lat geometry, resolutions) of each benchmarked region."""
    boundaries = gpd.read_file(DATA / "osm" / "monaco.osm.pbf", layer="multipolygons")
    monaco = shapely.union_all(boundaries[boundaries["admin_level"] == "10"].geometry.values)
    countries = gpd.read_file(NATURAL_EARTH / "naturalearth_lowres.shp")
    czechia = countries[countries["name"] == "Czechia"].geometry.iloc[0]
    berlin = gpd.read_file(BERLIN).geometry.iloc[0]
    return [
        ("Berlin", berlin, (10, 11)),
        ("Monaco quarters", monaco, (12, 13, 14)),
        ("Czechia (NE 1:110m)", czechia, (8, 9)),
        ("Kampala box 0.4 deg", shapely.box(32.4, 0.1, 32.8, 0.5), (11,)),
    ]


def baselines() -> dict[str, Callable[[shapely.Geometry, int, bool], np.ndarray]]:
    """Every installed way to fill a region, by name, each giving sorted ``int64`` cells."""
    fills = {
        "h3-py": lambda g, res, touching: np.sort(
            np.asarray(
                h3.h3shape_to_cells_experimental(
                    h3.geo_to_h3shape(g), res, contain="overlap" if touching else "center"
                ),
                dtype=np.int64,
            )
        )
    }
    try:
        from h3ronpy.vector import ContainmentMode, wkb_to_cells
        from srai.h3 import shapely_geometry_to_h3
    except ImportError:
        return fills

    def h3ronpy_fill(g: shapely.Geometry, res: int, touching: bool) -> np.ndarray:
        mode = ContainmentMode.Covers if touching else ContainmentMode.ContainsCentroid
        cells = wkb_to_cells([g.wkb], res, containment_mode=mode, flatten=True).to_numpy()
        return np.unique(cells).astype(np.int64)

    fills["srai"] = lambda g, res, touching: np.sort(
        np.array([h3.str_to_int(c) for c in shapely_geometry_to_h3(g, res, buffer=touching)], dtype=np.int64)
    )
    fills["h3ronpy"] = h3ronpy_fill
    return fills


def best_seconds(fill: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """The best time of ``repeats`` calls and the last result."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        cells = fill()
        best = min(best, time.perf_counter() - start)
    return best, cells


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    fills = baselines()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"baselines: {', '.join(fills)} (srai/h3ronpy {'present' if 'srai' in fills else 'absent'})")
    for name, geometry, resolutions in regions():
        for res in resolutions:
            for touching in (False, True):
                ours_fill = partial(region_cells, geometry, res, touching=touching)
                seconds, ours = best_seconds(ours_fill, args.repeats)
                tracemalloc.start()
                region_cells(geometry, res, touching=touching)
                peak = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                others = {}
                for other, fill in fills.items():
                    other_seconds, cells = best_seconds(partial(fill, geometry, res, touching), args.repeats)
                    assert np.array_equal(cells, ours), f"{other} gives other cells for {name} res {res}"
                    others[other] = other_seconds
                rule = "touching" if touching else "centre"
                line = ", ".join(f"{k} {v:.3f} s ({v / seconds:.2f}x)" for k, v in others.items())
                print(
                    f"{name:<22} res {res:>2} {rule:<8} {ours.size:>8} cells: ours {seconds:.3f} s "
                    f"(peak {peak:.0f} MiB); {line}"
                )
                bench_record(
                    "regions",
                    f"{name} res {res} {rule}",
                    cells=int(ours.size),
                    seconds=round(seconds, 4),
                    tracemalloc_peak_mib=round(peak, 1),
                    **{f"{k}_seconds": round(v, 4) for k, v in others.items()},
                )


if __name__ == "__main__":
    main()
