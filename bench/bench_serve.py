"""Explorer benchmark: tile, search and view round trips over HTTP against `geolink serve`, beside the CLI.

Each store is served by a real `geolink serve` process on loopback; this script is the browser: it asks for
web-map tiles over the store's imagery (first request renders, a repeat is cached), the k=10 similar cells of
random stored cells (`/api/search?lon=&lat=`), and the cells of a map view (`/api/cells?bbox=`). Baselines
in the same run: `geolink search --lonlat` as a command (wall time, process start-up included) and the
library's `search()` in this process (the work the API wraps).

Usage: python bench/bench_serve.py --db demo/store [--db other/store] [--synthetic 1000000] [--queries 30]
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from tqdm import tqdm

from geolink_store.query.search import search
from geolink_store.store import Store
from geolink_store.testing import bench_record, cells_table, h3_grid

GEOLINK = str(Path(sys.executable).parent / "geolink")
CHUNK = 100_000


def synthetic(path: Path, rows: int, dim: int, *, index: bool) -> Path:
    """A store of ``rows`` synthetic cells (real H3 res-9 cells, clustered vectors), indexed like ingest."""
    store = Store.create_or_open(path)
    cells = h3_grid(rows)
    for start in tqdm(range(0, rows, CHUNK), desc=f"writing {rows:,} synthetic cells", unit="chunk"):
        store.upsert("cells", cells_table(cells[start : start + CHUNK], dim, seed=start), index=False)
    if not index:
        return path
    began = time.perf_counter()
    built = store.build_indexes()
    print(f"index {','.join(built) or 'none'} built in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return path


class Server:
    """`geolink serve` in a child process on a free loopback port."""

    def __init__(self, db: str, log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [GEOLINK, "serve", "--db", db, "--port", str(self.port)], stderr=log.open("w")
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                self.get("/api/info")
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.2)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=120) as response:
            return response.read()

    def timed(self, path: str) -> float:
        began = time.perf_counter()
        self.get(path)
        return (time.perf_counter() - began) * 1e3

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


def tiles_over(bounds: list[float], wanted: int = 40) -> list[tuple[int, int, int]]:
    """About ``wanted`` web-map tiles covering lon/lat ``bounds``, at the zoom that gives that many."""
    west, south, east, north = bounds
    for z in range(1, 24):
        x0, y0 = _tile(west, north, z)
        x1, y1 = _tile(east, south, z)
        if (x1 - x0 + 1) * (y1 - y0 + 1) >= wanted or z == 23:
            return [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)][: wanted * 2]
    raise AssertionError


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    x = (lon + 180) / 360
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2
    return int(x * 2**z), int(y * 2**z)


def measure(db: str, label: str, queries: int) -> None:
    store = Store.open(db)
    cells = store.table("cells").search().select(["h3", "lon", "lat"]).limit(None).to_arrow()
    rng = np.random.default_rng(0)
    picks = rng.choice(cells.num_rows, min(queries, cells.num_rows), replace=False)
    points = [(cells["lon"][int(i)].as_py(), cells["lat"][int(i)].as_py()) for i in picks]
    log = Path(tempfile.gettempdir()) / "bench_serve_server.log"
    print(f"server log: {log}", file=sys.stderr)
    server = Server(db, log)
    try:
        info = json.loads(server.get("/api/info"))
        tiles = tiles_over(info["imagery"]["bounds"] or info["bounds"])
        cold = [server.timed(f"/tiles/{z}/{x}/{y}.png") for z, x, y in tqdm(tiles, desc=f"{label} tiles")]
        warm = [server.timed(f"/tiles/{z}/{x}/{y}.png") for z, x, y in tiles]
        api = [
            server.timed(f"/api/search?lon={lon}&lat={lat}&k=10&modality=fused")
            for lon, lat in tqdm(points, desc=f"{label} searches")
        ]
        lon, lat = points[0]
        side = 0.1 if cells.num_rows > 100_000 else 1.0
        view = f"{lon - side},{lat - side / 2},{lon + side},{lat + side / 2}"
        shown = len(json.loads(server.get(f"/api/cells?bbox={view}&column=n_polygon"))["features"])
        views = [server.timed(f"/api/cells?bbox={view}&column=n_polygon") for _ in range(10)]
    finally:
        server.close()
    library = []
    for lon, lat in points:
        began = time.perf_counter()
        search(store, lonlat=(lon, lat), k=10, modality="fused")
        library.append((time.perf_counter() - began) * 1e3)
    cli = []
    for lon, lat in points[:5]:
        began = time.perf_counter()
        subprocess.run(
            [GEOLINK, "search", "--db", db, "--lonlat", f"{lon},{lat}", "--k", "10", "--format", "json"],
            check=True,
            capture_output=True,
        )
        cli.append((time.perf_counter() - began) * 1e3)
    figures = {
        "cells": cells.num_rows,
        "imagery": bool(info["imagery"]["available"]),
        "tile_zoom": tiles[0][0],
        "tiles": len(tiles),
        "tile_first_p50_ms": round(float(np.median(cold)), 1),
        "tile_first_p95_ms": round(float(np.percentile(cold, 95)), 1),
        "tile_cached_p50_ms": round(float(np.median(warm)), 1),
        "search_api_p50_ms": round(float(np.median(api)), 1),
        "search_api_p95_ms": round(float(np.percentile(api, 95)), 1),
        "search_library_p50_ms": round(float(np.median(library)), 1),
        "search_cli_p50_ms": round(float(np.median(cli)), 1),
        "view_cells": shown,
        "view_p50_ms": round(float(np.median(views)), 1),
    }
    print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), file=sys.stderr)
    bench_record("serve", label, **figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", action="append", default=[], help="a store to serve (repeatable)")
    parser.add_argument(
        "--synthetic", type=int, nargs="*", default=[], help="also a synthetic store this big"
    )
    parser.add_argument("--dim", type=int, default=64, help="vector width of the synthetic store")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--no-index", action="store_true", help="leave the synthetic store unindexed (exact)")
    args = parser.parse_args()
    for db in args.db:
        measure(db, Path(db).resolve().as_posix(), args.queries)
    for rows in args.synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            db = synthetic(Path(tmp) / "db", rows, args.dim, index=not args.no_index)
            label = f"synthetic {rows:,} x {args.dim}" + (", no index" if args.no_index else "")
            measure(str(db), label, args.queries)


if __name__ == "__main__":
    main()
