"""Rebuild this sample from the shared Kampala OpenAerialMap tiles (run from the repository root).

Run: .venv/bin/python geolink_store/data/kampala/make_sample.py ../shared/data/kampala_oam

Takes the contiguous 12 x 8 block of zoom-21 tiles (x 1238448-1238459, y 1046528-1046535), re-encodes each
tile as lossy WebP (quality 90, lossless alpha) to fit the package, and keeps the OSM building polygons that
intersect the block, tagged ``building=yes``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import geopandas as gpd
import shapely
from PIL import Image

from geolink_store.sources.xyz import tile_bounds

ZOOM = 21
COLUMNS = range(1238448, 1238460)
ROWS = range(1046528, 1046536)
HERE = Path(__file__).resolve().parent


def main() -> None:
    """Cut the sample out of the shared Kampala tiles and labels."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path, help="the kampala_oam folder")
    args = parser.parse_args()
    tiles = HERE / "tiles"
    tiles.mkdir(exist_ok=True)
    for x in COLUMNS:
        for y in ROWS:
            image = Image.open(args.source / f"OAM-{x}-{y}-{ZOOM}.png")
            image.save(tiles / f"OAM-{x}-{y}-{ZOOM}.webp", format="WEBP", quality=90, method=6)
    west, south, _, _ = tile_bounds(COLUMNS[0], ROWS[-1], ZOOM)
    _, _, east, north = tile_bounds(COLUMNS[-1], ROWS[0], ZOOM)
    block = gpd.GeoSeries([shapely.box(west, south, east, north)], crs="EPSG:3857").to_crs("EPSG:4326")[0]
    buildings = gpd.read_file(args.source / "labels.geojson")
    buildings = buildings[buildings.intersects(block)].reset_index(drop=True)
    buildings["osm_id"] = buildings["osm_id"].astype("Int64")
    buildings["building"] = "yes"
    buildings[["osm_id", "building", "geometry"]].to_file(HERE / "buildings.geojson", driver="GeoJSON")
    print(f"{len(COLUMNS) * len(ROWS)} tiles, {len(buildings)} buildings; block (lon/lat) {block.bounds}")


if __name__ == "__main__":
    main()
