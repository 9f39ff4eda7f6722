"""Ranked H3 cells as a GeoDataFrame: ids, hex ids, the given columns, centres and hexagons (EPSG:4326)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from geolink_store import grid
from geolink_store.constants import H3_COLUMN, WGS84

if TYPE_CHECKING:
    import geopandas as gpd


def cells_frame(cells: np.ndarray, columns: Mapping[str, np.ndarray]) -> gpd.GeoDataFrame:
    """``h3``, ``h3_hex``, then ``columns`` (a value per cell, in order), ``lon``, ``lat``, the hexagons."""
    import geopandas as gpd

    lon, lat = grid.cell_lonlat(cells)
    return gpd.GeoDataFrame(
        {H3_COLUMN: cells, "h3_hex": grid.hex_id_array(cells).to_pylist(), **columns, "lon": lon, "lat": lat},
        geometry=grid.cell_geometries(cells),
        crs=WGS84,
    )
