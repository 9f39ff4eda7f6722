"""A folder of slippy-map tiles as one raster: the finest zoom's tiles stitched into a Web Mercator VRT.

Tile names follow ``{z}/{x}/{y}.<ext>`` or OpenAerialMap's ``OAM-{x}-{y}-{z}.<ext>`` (png, jpg, jpeg, webp;
GDAL detects the real format, so a JPEG named ``.png`` reads fine). Tiles may be RGB, RGBA or grey; missing
tiles and transparent pixels read as invalid. Only the finest zoom present is used.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import shapely
from pyproj import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from geolink_store.chips import transformer
from geolink_store.constants import TILE_SUFFIXES, WEB_MERCATOR, WGS84
from geolink_store.errors import GeolinkError
from geolink_store.sources.raster import RasterSource

HALF_WORLD = math.pi * 6378137.0  # metres from the Web Mercator origin to the edge of the map
_OAM_NAME = re.compile(r"^OAM-(\d+)-(\d+)-(\d+)$")


@dataclass(frozen=True)
class Tile:
    """One slippy-map tile file at zoom ``z``, column ``x`` and row ``y`` (row 0 at the north edge)."""

    z: int
    x: int
    y: int
    path: Path


def tile_bounds(x: int, y: int, z: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a tile in Web Mercator metres (EPSG:3857)."""
    size = 2 * HALF_WORLD / 2**z
    west, north = -HALF_WORLD + x * size, HALF_WORLD - y * size
    return west, north - size, west + size, north


def find_tiles(folder: str | os.PathLike) -> list[Tile]:
    """The tiles of the finest zoom level in a folder, sorted by row then column.

    Raises:
        GeolinkError: the folder holds no tile named ``{z}/{x}/{y}.<ext>`` or ``OAM-{x}-{y}-{z}.<ext>``.
    """
    folder = Path(folder)
    tiles = [tile for path in folder.rglob("*") if (tile := _parse_tile(folder, path)) is not None]
    if not tiles:
        raise GeolinkError(
            f"no map tiles in {folder}: "
            "expected files named {z}/{x}/{y}.png or OAM-{x}-{y}-{z}.png"
        )
    finest = max(tile.z for tile in tiles)
    return sorted((tile for tile in tiles if tile.z == finest), key=lambda tile: (tile.y, tile.x))


def open_tile_folder(folder: str | os.PathLike, **options: object) -> RasterSource:
    """A tile folder as a :class:`RasterSource` over a VRT of its finest zoom (``options`` pass through)."""
    tiles = find_tiles(folder)
    boxes = shapely.box(*np.array([tile_bounds(t.x, t.y, t.z) for t in tiles]).T)
    to_wgs84 = transformer(CRS.from_user_input(WEB_MERCATOR), CRS.from_user_input(WGS84))
    footprint = shapely.transform(
        shapely.union_all(boxes), lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1]))
    )
    options.setdefault("name", Path(folder).name)
    return RasterSource(mosaic_vrt(tiles), footprint=footprint, **options)


def mosaic_vrt(tiles: list[Tile]) -> str:
    """The XML of a 4-band (R, G, B, alpha) EPSG:3857 VRT placing same-zoom tiles on one pixel grid."""
    zoom = tiles[0].z
    tile_px = _tile_layout(tiles[0])[0]
    x0, y0 = min(t.x for t in tiles), min(t.y for t in tiles)
    width = (max(t.x for t in tiles) - x0 + 1) * tile_px
    height = (max(t.y for t in tiles) - y0 + 1) * tile_px
    west, _, _, north = tile_bounds(x0, y0, zoom)
    pixel = 2 * HALF_WORLD / 2**zoom / tile_px
    sources: list[list[str]] = [[], [], [], []]
    for tile in tiles:
        size, count, has_alpha = _tile_layout(tile)
        rects = (
            f'<SrcRect xOff="0" yOff="0" xSize="{size}" ySize="{size}"/>'
            f'<DstRect xOff="{(tile.x - x0) * tile_px}" yOff="{(tile.y - y0) * tile_px}" '
            f'xSize="{tile_px}" ySize="{tile_px}"/>'
        )
        filename = f'<SourceFilename relativeToVRT="0">{escape(str(tile.path.resolve()))}</SourceFilename>'
        colour_bands = (1, 2, 3) if count >= 3 else (1, 1, 1)
        for band, source_band in enumerate(colour_bands):
            sources[band].append(
                f"<SimpleSource>{filename}<SourceBand>{source_band}</SourceBand>{rects}</SimpleSource>"
            )
        if has_alpha:
            sources[3].append(
                f"<SimpleSource>{filename}<SourceBand>{count}</SourceBand>{rects}</SimpleSource>"
            )
        else:  # an opaque tile: alpha 255 over its whole extent
            sources[3].append(
                f"<ComplexSource>{filename}<SourceBand>1</SourceBand>{rects}"
                "<ScaleOffset>255</ScaleOffset><ScaleRatio>0</ScaleRatio></ComplexSource>"
            )
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{band + 1}"><ColorInterp>{interp}</ColorInterp>'
        f"{''.join(sources[band])}</VRTRasterBand>"
        for band, interp in enumerate(("Red", "Green", "Blue", "Alpha"))
    )
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{WEB_MERCATOR}</SRS>'
        f"<GeoTransform>{west!r}, {pixel!r}, 0, {north!r}, 0, {-pixel!r}</GeoTransform>{bands}</VRTDataset>"
    )


def _tile_layout(tile: Tile) -> tuple[int, int, bool]:
    """(size in pixels, band count, whether its last band is alpha) of a tile file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(tile.path) as dataset:
                size, count, interp, dtype = (
                    dataset.width,
                    dataset.count,
                    dataset.colorinterp,
                    dataset.dtypes[0],
                )
                square = dataset.width == dataset.height
        except RasterioError as error:
            raise GeolinkError(f"cannot read map tile {tile.path}: {' '.join(str(error).split())}") from error
    if interp[0] == ColorInterp.palette:
        raise GeolinkError(f"map tile {tile.path} is a palette image; convert the tiles to RGB(A)")
    if not square or dtype != "uint8":
        raise GeolinkError(f"map tile {tile.path} is not a square 8-bit image")
    return size, count, interp[-1] == ColorInterp.alpha


def _parse_tile(folder: Path, path: Path) -> Tile | None:
    if path.suffix.lower() not in TILE_SUFFIXES or not path.is_file():
        return None
    if match := _OAM_NAME.match(path.stem):
        x, y, z = (int(value) for value in match.groups())
        return Tile(z, x, y, path)
    parts = path.relative_to(folder).with_suffix("").parts[-3:]
    if len(parts) == 3 and all(part.isdigit() for part in parts):
        z, x, y = (int(part) for part in parts)
        return Tile(z, x, y, path)
    return None
