"""Chip reading throughput (chips/s) from a local tiled GeoTIFF, against a naive whole-scene baseline, and
peak memory for a region 10x larger.

Run: .venv/bin/python bench/bench_chips.py [--res 10] [--upsample 5] [--naive 8]

The raster is synthetic-from-real: the 2010 NAIP scene (../shared/data/naip_north_dakota, 5 m, RGB) upsampled
to 1 m into a tiled, deflate-compressed GeoTIFF in a temp dir (4670 x 3615 px). The fast path is
``ImagerySource.read`` (a WarpedVRT per chip over only the chip's source window); the baseline reads the whole
scene and reprojects it onto each chip grid, in the same run. Memory: tracemalloc peak (numpy and Python
allocations) and the growth of the resident set (Linux /proc; includes GDAL's block cache), for a region of
1/10 of the scene and for the whole scene.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject

from geolink_store.chips import chip_for_cell
from geolink_store.constants import IMAGENET_MEAN, IMAGENET_STD
from geolink_store.grid import region_cells
from geolink_store.sources.mosaic import open_imagery
from geolink_store.testing import bench_record

NAIP = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "naip_north_dakota"
    / "m_4709963_se_14_1_20100629.tif"
)


def make_scene(folder: Path, upsample: int) -> Path:
    """NAIP RGB upsampled ``upsample`` times into a tiled GeoTIFF, written block by block (little memory)."""
    path = folder / "naip_upsampled.tif"
    with rasterio.open(NAIP) as source:
        transform = source.transform * source.transform.scale(1 / upsample)
        height, width = source.height * upsample, source.width * upsample
        profile = {
            **source.profile,
            "count": 3,
            "width": width,
            "height": height,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "photometric": "RGB",
            "transform": transform,
        }
        with (
            WarpedVRT(
                source, transform=transform, width=width, height=height, resampling=Resampling.bilinear
            ) as up,
            rasterio.open(path, "w", **profile) as target,
        ):
            for _, window in target.block_windows(1):
                target.write(up.read([1, 2, 3], window=window), window=window)
    return path


def naive_chip(path: Path, spec) -> np.ndarray:
    """Whole-scene read, then a reprojection of it onto the chip grid (what a first attempt would do)."""
    with rasterio.open(path) as source:
        scene = source.read()
        chip = np.zeros((3, spec.size, spec.size), dtype=np.uint8)
        reproject(
            scene,
            chip,
            src_transform=source.transform,
            src_crs=source.crs,
            dst_transform=spec.transform,
            dst_crs=spec.crs.to_wkt(),
            resampling=Resampling.bilinear,
        )
    return (chip / np.float32(255) - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]


def resident_mib() -> float:
    """The process's current resident set size (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def read_region(source, cells: np.ndarray, crs) -> tuple[float, float, float]:
    """(chips/s, tracemalloc peak MiB, resident-set growth MiB) of reading every chip once, keeping none."""
    rss_before = resident_mib()
    tracemalloc.start()
    start = time.perf_counter()
    checksum = 0.0
    for cell in cells:
        chip = source.read(chip_for_cell(int(cell), crs))
        checksum += float(chip.image[:, 112, 112].sum()) if chip is not None else 0.0
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss_growth = resident_mib() - rss_before
    return len(cells) / elapsed, peak, rss_growth


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--res", type=int, default=10, help="H3 resolution of the cells")
    parser.add_argument("--upsample", type=int, default=5, help="upsampling of the 5 m NAIP scene")
    parser.add_argument("--naive", type=int, default=8, help="chips read by the naive baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = make_scene(Path(folder), args.upsample)
        source = open_imagery(path)
        cells = source.covered_cells(region_cells(source.footprint, args.res))
        crs = source.crs
        rng = np.random.default_rng(0)
        small = np.sort(rng.choice(cells, size=len(cells) // 10, replace=False))
        read_region(source, small[:5], crs)  # warm-up: open the file, build the transformers
        small_rate, small_peak, small_rss = read_region(source, small, crs)
        rate, peak, rss = read_region(source, cells, crs)

        start = time.perf_counter()
        for cell in small[: args.naive]:
            naive_chip(path, chip_for_cell(int(cell), crs))
        naive_rate = args.naive / (time.perf_counter() - start)

        with rasterio.open(path) as dataset:
            shape = f"{dataset.width} x {dataset.height} px, {dataset.count} bands"
    spec = chip_for_cell(int(cells[0]), crs)
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(
        f"raster: NAIP upsampled x{args.upsample} ({shape}, {5 / args.upsample:g} m), res {args.res} chips "
        f"{spec.bounds[2] - spec.bounds[0]:.0f} m wide ({spec.pixel_size:.2f} m/px)"
    )
    print(f"{'region':<28}{'cells':>7}{'chips/s':>10}{'tracemalloc peak MiB':>22}{'RSS growth MiB':>16}")
    print(f"{'1/10 scene':<28}{len(small):>7}{small_rate:>10.1f}{small_peak:>22.1f}{small_rss:>16.1f}")
    print(f"{'whole scene (10x)':<28}{len(cells):>7}{rate:>10.1f}{peak:>22.1f}{rss:>16.1f}")
    print(f"{'naive whole-scene baseline':<28}{args.naive:>7}{naive_rate:>10.2f}")
    print(f"speed-up over the naive baseline: {rate / naive_rate:.0f}x")
    bench_record("chips", "whole scene", chips_per_s=round(rate, 2), vs_naive=round(rate / naive_rate, 1))


if __name__ == "__main__":
    main()
