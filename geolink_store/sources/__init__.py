"""Where imagery and OSM come from: rasters, slippy-map tile folders, their mosaic, and OSM extracts."""

from geolink_store.sources.mosaic import ImagerySource, open_imagery
from geolink_store.sources.osm import OSMIndex, read_example_folder, read_osm
from geolink_store.sources.raster import RasterSource
from geolink_store.sources.xyz import open_tile_folder

__all__ = [
    "ImagerySource",
    "OSMIndex",
    "RasterSource",
    "open_imagery",
    "open_tile_folder",
    "read_example_folder",
    "read_osm",
]
