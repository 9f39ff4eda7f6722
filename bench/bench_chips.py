"""Chip reading throughput (chips/s) on the shared real rasters, beside TorchGeo and the warped path, one run.

Run: PYTHONPATH=/work/envs/baselines .venv/bin/python bench/bench_chips.py [--repeats 3]
(TorchGeo is an optional same-run baseline, installed outside the project env, e.g. ``pip install --target
/work/envs/baselines --no-deps torchgeo``; without it the baseline is reported absent.)

Rasters: SpaceNet Atlanta (900 x 900 px, 0.5 m, uncompressed uint16, EPSG:32616) and the 2010 NAIP scene
(934 x 724 px, 5 m, deflate-compressed, EPSG:26914) from ../shared/data, and the bundled sample's slippy-map
tiles (zoom-21 WebP, 0.07 m, RGBA with transparent pixels, EPSG:3857, as one VRT); the chips of every
cell the raster covers, in the raster's own CRS. Cases, each best of ``--repeats``:

- ours: ``ImagerySource.read`` (window path where the chip lies inside the raster, else the warp; scaled,
  ImageNet-normalised float32 chip and its validity mask);
- warped: the same with the window path switched off (a ``WarpedVRT`` per chip, as before it), whose pixels
  the window path must equal within one grey level (checked on every chip);
- TorchGeo 0.8 ``RasterDataset`` queried with the same chip squares at the chip's pixel size
  (``ds[west:east:px, south:north:px]``: raw values of all bands, no scaling or mask, ``nearest`` for
  integer rasters), torch on one thread (as both sides read on one thread; more threads only slow its small
  tensor copies here).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from geolink_store.chips import ChipSpec, chip_for_cell
from geolink_store.constants import IMAGENET_STD
from geolink_store.grid import region_cells
from geolink_store.sample import kampala_sample
from geolink_store.sources.mosaic import ImagerySource, open_imagery
from geolink_store.sources.xyz import find_tiles, mosaic_vrt
from geolink_store.testing import bench_record

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TILES = kampala_sample().imagery
CASES = (
    (DATA / "atlanta_spacenet" / "sample_geotiff.tif", (11, 12)),
    (DATA / "naip_north_dakota" / "m_4709963_se_14_1_20100629.tif", (9, 10)),
    (TILES, (12, 13)),
)


def best_rate(read: Callable[[ChipSpec], object], specs: list[ChipSpec], repeats: int) -> float:
    """The best chips/s of reading every spec once, over ``repeats`` runs (after one warm-up chip)."""
    read(specs[0])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for spec in specs:
            read(spec)
        best = min(best, time.perf_counter() - start)
    return len(specs) / best


def warped_only(path: Path) -> ImagerySource:
    """The source read as before the window path: every chip through a ``WarpedVRT``."""
    source = open_imagery(path)
    source.sources[0]._read_window = lambda *_: None  # the window path declines every chip
    return source


def max_grey_difference(ours: ImagerySource, warped: ImagerySource, specs: list[ChipSpec]) -> float:
    """The largest pixel difference between the two paths over all chips, in grey levels of 255."""
    worst = 0.0
    for spec in specs:
        a, b = ours.read(spec), warped.read(spec)
        assert (a is None) == (b is None) and (a is None or np.array_equal(a.valid, b.valid))
        if a is not None:
            grey = np.abs(a.image - b.image) * IMAGENET_STD[:, None, None] * 255
            worst = max(worst, float(grey.max()))
    return worst


def torchgeo_reader(path: Path, folder: str) -> Callable[[ChipSpec], object] | None:
    """A TorchGeo ``RasterDataset`` query per chip square, or None where TorchGeo is not installed.

    A tile folder is given to it as the same VRT our reader opens, written to a file in ``folder``.
    """
    try:
        from torchgeo.datasets import RasterDataset
    except ImportError:
        return None
    if path.is_dir():
        vrt = Path(folder) / f"{path.name}.vrt"
        vrt.write_text(mosaic_vrt(find_tiles(path)))
        path = vrt
    dataset = RasterDataset(paths=str(path))

    def read(spec: ChipSpec) -> object:
        west, south, east, north = spec.bounds
        image = dataset[west : east : spec.pixel_size, south : north : spec.pixel_size]["image"]
        assert image.shape[-2:] == (spec.size, spec.size), image.shape
        return image

    return read


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        f"{'raster':<34}{'res':>4}{'chips':>6}{'px m':>6}{'ours/s':>9}{'warped/s':>9}{'TorchGeo/s':>11}"
        f"{'vs TG':>7}{'vs warp':>8}{'max grey':>9}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for path, resolutions in CASES:
            run_case(path, resolutions, folder, args.repeats)


def run_case(path: Path, resolutions: tuple[int, ...], folder: str, repeats: int) -> None:
    """Measure and print one raster's chips at each resolution."""
    ours, warped, torchgeo = open_imagery(path), warped_only(path), torchgeo_reader(path, folder)
    for res in resolutions:
        cells = ours.covered_cells(region_cells(ours.footprint, res))
        specs = [chip_for_cell(int(cell), ours.crs) for cell in cells]
        difference = max_grey_difference(ours, warped, specs)
        rate = best_rate(ours.read, specs, repeats)
        warped_rate = best_rate(warped.read, specs, repeats)
        baseline = best_rate(torchgeo, specs, repeats) if torchgeo else None
        versus = f"{rate / baseline:.2f}x" if baseline else "absent"
        print(
            f"{path.name:<34}{res:>4}{len(specs):>6}{specs[0].pixel_size:>6.2f}{rate:>9.0f}"
            f"{warped_rate:>9.0f}{baseline or float('nan'):>11.0f}{versus:>7}"
            f"{rate / warped_rate:>7.2f}x{difference:>9.2f}"
        )
        bench_record(
            "chips",
            f"{path.name} res {res}",
            chips_per_s=round(rate, 1),
            warped_chips_per_s=round(warped_rate, 1),
            torchgeo_chips_per_s=round(baseline, 1) if baseline else None,
            vs_torchgeo=round(rate / baseline, 3) if baseline else None,
            max_grey_difference=round(difference, 3),
        )


if __name__ == "__main__":
    main()
