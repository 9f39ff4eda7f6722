"""The project's shared vocabulary, defined once.

CRS names, chip size and normalisation, tables, columns, suffixes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

WGS84 = "EPSG:4326"
"""Longitude/latitude in degrees: the CRS of every stored geometry and of every user-facing coordinate."""
EQUAL_AREA = "EPSG:6933"
"""A global cylindrical equal-area CRS, for areas and shares of coverage."""
WEB_MERCATOR = "EPSG:3857"

CHIP_SIZE = 224
"""Side of a chip in pixels, the model's input size."""
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

MAX_RES = 15
"""The finest H3 resolution."""

H3_COLUMN = "h3"
MODEL_COLUMN = "model_id"
EPOCH_COLUMN = "epoch"
DEFAULT_EPOCH = "default"
"""The epoch of rows ingested without ``--epoch``, and of every row of a store made before epochs existed."""
RES_COLUMN = "res"
GEOMETRY_COLUMN = "geometry"

CELLS = "cells"
PATCHES = "patches"
MODELS = "models"
HEADS = "heads"
PREDICTIONS = "predictions"
IMAGERY = "imagery"
TABLES = (CELLS, PATCHES, MODELS, HEADS, PREDICTIONS, IMAGERY)

Modality = Literal["image", "osm", "fused"]
"""A stored vector column of ``cells``."""
MODALITIES: tuple[Modality, ...] = ("image", "osm", "fused")
HeadModality = Literal["image", "osm", "fused", "concat"]
"""What a head reads: one stored vector, or ``concat`` of all three."""
HEAD_MODALITIES: tuple[HeadModality, ...] = (*MODALITIES, "concat")
NODE_COUNT_COLUMNS = ("n_point", "n_line", "n_polygon")

GEOPARQUET_SUFFIXES = (".parquet", ".geoparquet")
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", *GEOPARQUET_SUFFIXES)
"""Vector files read with geopandas (regions, OSM extracts, labels)."""
RASTER_SUFFIXES = (".tif", ".tiff", ".png", ".jp2", ".vrt")
TILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
