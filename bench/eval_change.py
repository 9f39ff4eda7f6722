"""How well ``geolink change`` ranks changes that we make on real imagery, against raw pixel differencing.

The shared North Dakota NAIP quarter-quad (2010 and 2020, 5 m) is ingested image-only as epochs ``2010`` and
``2020``. Into the 2020 scene we paste, per seed, ``--changed`` cells' hexagons with the pixels of other, far
away cells of the same scene (a field turned into another field or a farmstead: real-looking changes with a
known answer), then re-ingest 2020. On top of the real ten-year differences (crop rotation, season: the
2010 scene is from June, the 2020 scene from August) we rank every cell by:

- ``score``: ``geolink change``'s ranking (centred cosine distance over the neighbourhood's median);
- ``distance``: the plain cosine distance of the image vectors;
- ``pixels``: the mean absolute difference of the two chips (each scene standardised per band first);
- ``random``: the expected precision of a random ranking.

Precision at the number of pasted cells, mean over seeds. A second variant also darkens the whole 2020 scene
(gamma 1.6, gain 0.8: a change of illumination that no cell should rank for).

Run: ``python bench/eval_change.py --shared ../shared/data [--seeds 3 --changed 15 --res 9]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyproj import CRS
from rasterio.features import geometry_mask

from geolink_store.chips import chip_for_cell, transformer
from geolink_store.constants import WGS84
from geolink_store.grid import cell_geometries, region_cells
from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.query.change import change_scores
from geolink_store.sources import open_imagery
from geolink_store.store import Store
from geolink_store.testing import bench_record
from model import GeoLink

SCENES = ("m_4709963_se_14_1_20100629.tif", "m_4709963_se_14_1_20200831.tif")
REGION = "-99.185,47.005,-99.125,47.036"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--changed", type=int, default=15)
    parser.add_argument("--res", type=int, default=9)
    args = parser.parse_args()
    folder = args.shared / "naip_north_dakota"
    before, after = (folder / name for name in SCENES)
    model = GeoLink.default()
    settings = {"res": args.res}
    with tempfile.TemporaryDirectory(prefix="geolink-eval-change-") as work:
        base = Path(work) / "base"
        ingest(
            str(base),
            REGION,
            [str(before)],
            None,
            model=model,
            settings=IngestSettings(epoch="2010", **settings),
        )
        cells = region_cells(REGION, args.res)
        rng = np.random.default_rng(0)
        results: dict[str, dict[str, list[float]]] = {}
        for variant in ("pasted", "pasted+darker"):
            for seed in range(args.seeds):
                store_path = Path(work) / f"{variant}-{seed}"
                shutil.copytree(base, store_path)
                stored = Store.open(store_path).existing_cells(
                    Store.open(store_path).default_model(), epoch="2010"
                )
                changed = rng.choice(stored, size=args.changed, replace=False)
                scene = Path(work) / f"{variant}-{seed}.tif"
                paste_changes(after, scene, changed, stored, rng, darker=variant.endswith("darker"))
                started = time.perf_counter()
                ingest(
                    str(store_path),
                    REGION,
                    [str(scene)],
                    None,
                    model=model,
                    settings=IngestSettings(epoch="2020", **settings),
                )
                ranked = change_scores(Store.open(store_path), "2010", "2020")
                seconds = time.perf_counter() - started
                truth = set(changed.tolist())
                rankings = {
                    "score": ranked["h3"].to_numpy(),
                    "distance": ranked.sort_values("distance", ascending=False)["h3"].to_numpy(),
                    "pixels": pixel_ranking(before, scene, ranked["h3"].to_numpy()),
                }
                for method, order in rankings.items():
                    hit = len(truth & set(order[: args.changed].tolist())) / args.changed
                    results.setdefault(variant, {}).setdefault(method, []).append(hit)
                results[variant].setdefault("random", []).append(args.changed / len(ranked))
                print(
                    f"{variant} seed {seed}: {len(ranked)} cells, ingest+change {seconds:.0f} s", flush=True
                )
        print(f"\nprecision at {args.changed} pasted cells of {len(cells)} (mean of {args.seeds} seeds)")
        print(f"{'variant':<15}" + "".join(f"{m:>10}" for m in ("score", "distance", "pixels", "random")))
        for variant, methods in results.items():
            print(
                f"{variant:<15}"
                + "".join(f"{np.mean(methods[m]):10.3f}" for m in ("score", "distance", "pixels", "random"))
            )
            for method, values in methods.items():
                bench_record(
                    "eval_change",
                    f"{variant}/{method}",
                    precision=round(float(np.mean(values)), 4),
                    seeds=args.seeds,
                    changed=args.changed,
                    res=args.res,
                )


def paste_changes(
    source: Path,
    out: Path,
    changed: np.ndarray,
    stored: np.ndarray,
    rng: np.random.Generator,
    *,
    darker: bool,
) -> None:
    """Write ``source`` with each cell of ``changed`` covered by the pixels of a far away stored cell."""
    with rasterio.open(source) as dataset:
        pixels = dataset.read()
        profile = dataset.profile
        interpretation = dataset.colorinterp
        to_raster = transformer(CRS.from_user_input(WGS84), dataset.crs)
        inverse = ~dataset.transform
        shape = dataset.shape
        hexagons = {
            int(c): shapely.transform(g, lambda xy: np.column_stack(to_raster.transform(xy[:, 0], xy[:, 1])))
            for c, g in zip(stored, cell_geometries(stored), strict=True)
        }
    result = pixels.copy()
    for cell in changed:
        hexagon = hexagons[int(cell)]
        donors = [c for c in hexagons if hexagons[c].centroid.distance(hexagon.centroid) > 1500]
        donor = hexagons[int(rng.choice(donors))]
        mask = ~geometry_mask([hexagon], out_shape=shape, transform=dataset.transform)
        rows, cols = np.nonzero(mask)
        (dc, dr) = np.subtract(
            inverse * (donor.centroid.x, donor.centroid.y), inverse * (hexagon.centroid.x, hexagon.centroid.y)
        )
        src_rows = np.clip(rows + int(round(dr)), 0, shape[0] - 1)
        src_cols = np.clip(cols + int(round(dc)), 0, shape[1] - 1)
        result[:, rows, cols] = pixels[:, src_rows, src_cols]
    if darker:  # kept off 0, the scene's nodata value
        result = np.clip(255 * 0.8 * (result / 255.0) ** 1.6, 1, 255).astype(np.uint8)
    with rasterio.open(out, "w", **profile, photometric="minisblack") as written:  # band 4 is NIR, not alpha
        written.write(result)
        written.colorinterp = interpretation


def pixel_ranking(before: Path, after: Path, cells: np.ndarray) -> np.ndarray:
    """The cells ordered by the mean absolute difference of their chips, each scene standardised per band."""
    sources = [open_imagery(path) for path in (before, after)]
    crs = sources[0].crs
    chips = [[source.read(chip_for_cell(int(cell), crs)) for cell in cells] for source in sources]
    stacks = [np.stack([chip.image for chip in side]) for side in chips]
    valid = np.stack([a.valid & b.valid for a, b in zip(*chips, strict=True)])
    standard = [
        (s - s.mean(axis=(0, 2, 3), keepdims=True)) / s.std(axis=(0, 2, 3), keepdims=True) for s in stacks
    ]
    difference = np.abs(standard[0] - standard[1]).mean(axis=1)
    score = (difference * valid).sum(axis=(1, 2)) / np.maximum(valid.sum(axis=(1, 2)), 1)
    return cells[np.argsort(-score, kind="stable")]


if __name__ == "__main__":
    main()
