"""Export a store table to GeoParquet (EPSG:4326), hexagons as geometry, vectors as float lists."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import pandas as pd

from geolink_store import grid
from geolink_store.constants import H3_COLUMN, MODEL_COLUMN, WGS84
from geolink_store.errors import GeolinkError
from geolink_store.store import Store
from geolink_store.store._filters import quote
from geolink_store.store.epochs import epoch_filter


def export_table(
    store: Store,
    table: str,
    out: str | os.PathLike,
    *,
    model_id: str | None = None,
    epoch: str | None = None,
) -> int:
    """Write ``table`` (optionally one model's or one epoch's rows) to ``out``; returns the rows written.

    Tables with a ``geometry`` (WKB) column keep it; tables with only an ``h3`` column (``patches``) get the
    cells' hexagons; other tables (``models``) are written as plain Parquet.

    Raises:
        GeolinkError: unknown table, model or epoch, or an output path whose folder does not exist.
    """
    out = Path(out)
    if not out.parent.is_dir():
        raise GeolinkError(f"output folder {out.parent} does not exist")
    target = store.table(table)
    query = target.search()
    filters = [f"{MODEL_COLUMN} = {quote(model_id)}"] if model_id is not None else []
    if epoch is not None:
        store.default_epoch(epoch, table, model_id)
        filters += [f for f in [epoch_filter(target.schema, epoch)] if f]
    if filters:
        query = query.where(" AND ".join(filters))
    rows = query.limit(None).to_arrow()
    if model_id is not None and rows.num_rows == 0:
        raise GeolinkError(f"table {table!r} has no rows for model {model_id!r}")
    if "geometry" in rows.column_names:
        geometry = gpd.GeoSeries.from_wkb(rows["geometry"].to_pylist(), crs=WGS84)
        rows = rows.drop_columns(["geometry"])
    elif H3_COLUMN in rows.column_names:
        geometry = gpd.GeoSeries(grid.cell_geometries(rows[H3_COLUMN].to_numpy()), crs=WGS84)
    else:
        rows.to_pandas().to_parquet(out, index=False)
        return rows.num_rows
    frame: pd.DataFrame = rows.to_pandas()
    gpd.GeoDataFrame(frame, geometry=geometry, crs=WGS84).to_parquet(out, index=False)
    return rows.num_rows
