"""How well ``geolink disagree`` finds cells whose map we made wrong, against a random ranking.

On real imagery with its real OSM buildings (shared Kampala OpenAerialMap tiles at H3 res 13, Atlanta
WorldView-2 at res 12), a share of the buildings is removed from the OSM, the region is ingested with the
thinned map, and every cell is ranked by ``disagreement``. The cells whose hexagon overlaps a removed building
are the known answer (the image shows a building the map lacks); we report precision at their number for
``direction="image"`` (the image shows a building the map lacks), the same for the opposite direction (which
should find few of them), and the precision a random ranking has on average.

Run: ``python bench/eval_disagree.py --shared ../shared/data [--share 0.3 --seeds 1]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from geolink_store.grid import cell_geometries
from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.query.disagree import disagreement
from geolink_store.sources import open_imagery
from geolink_store.store import Store
from geolink_store.testing import bench_record
from model import GeoLink

REGIONS = {
    "atlanta_r12": ("atlanta_spacenet/sample_geotiff.tif", "atlanta_spacenet/geotiff_labels.geojson", 12),
    "kampala_r13": ("kampala_oam", "kampala_oam/labels.geojson", 13),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--share", type=float, default=0.3, help="Share of the buildings removed.")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--work", type=Path, help="Keep the stores here (and resume those found there).")
    args = parser.parse_args()
    model = GeoLink.default()
    print(
        f"{'region':<13} {'seed':>4} {'cells':>6} {'removed':>8} {'truth':>6} {'P@truth':>8} {'random':>7} "
        f"{'P map dir':>9} {'s':>5}"
    )
    with tempfile.TemporaryDirectory(prefix="geolink-eval-disagree-") as temporary:
        work = args.work or Path(temporary)
        for name, (imagery, labels, res) in REGIONS.items():
            imagery_path = args.shared / imagery
            buildings = gpd.read_file(args.shared / labels).to_crs("EPSG:4326")[["geometry"]]
            buildings["geometry"] = shapely.make_valid(buildings.geometry.values)
            buildings["building"] = "yes"
            region = ",".join(map(str, open_imagery(imagery_path).footprint.bounds))
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                removed = rng.random(len(buildings)) < args.share
                osm = Path(work) / f"{name}-{seed}.geojson"
                buildings[~removed].to_file(osm, driver="GeoJSON")
                db = Path(work) / f"{name}-{seed}"
                started = time.perf_counter()
                ingest(  # resumes a store kept in --work: encodes only what it lacks
                    str(db),
                    region,
                    [str(imagery_path)],
                    str(osm),
                    model=model,
                    settings=IngestSettings(res=res, allow_empty_osm=True),
                )
                ranked = disagreement(Store.open(db))
                seconds = time.perf_counter() - started
                cells = ranked["h3"].to_numpy()
                gone = shapely.union_all(buildings.geometry[removed].values)
                truth = shapely.intersects(cell_geometries(cells), gone)
                kept = shapely.union_all(buildings.geometry[~removed].values)
                truth &= ~shapely.intersects(cell_geometries(cells), kept)  # no building left in the map
                count = int(truth.sum())
                precision = float(truth[:count].mean()) if count else float("nan")
                wrong_way = disagreement(Store.open(db), direction="map")
                opposite = (
                    float(np.isin(wrong_way["h3"].to_numpy()[:count], cells[truth]).mean()) if count else 0.0
                )
                random = count / len(cells)
                print(
                    f"{name:<13} {seed:>4} {len(cells):>6} {int(removed.sum()):>8} {count:>6} "
                    f"{precision:8.3f} {random:7.3f} {opposite:9.3f} {seconds:5.0f}"
                )
                bench_record(
                    "eval_disagree",
                    f"{name}/seed{seed}",
                    cells=len(cells),
                    truth=count,
                    precision=round(precision, 4),
                    random=round(random, 4),
                    map_direction=round(opposite, 4),
                )


if __name__ == "__main__":
    main()
