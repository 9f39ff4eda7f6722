"""Zonal statistics of stored vectors: per polygon, its cells' count and their area-weighted mean/std vector.

A cell's weight in a zone is the share of its hexagon inside the zone (1 inside, less on the edge, 0 outside:
:func:`geolink_store.grid.cell_shares`); with ``res`` coarser than the store's, each cell takes the share of
its parent at ``res`` (faster for large zones, coarser edges). For weights ``w`` and vectors ``v`` of a zone::

    mean = sum(w * v) / sum(w)        std = sqrt(sum(w * (v - mean) ** 2) / sum(w))   (per dimension)

Output, one row per zone in input order: the zone's attributes and geometry, ``model_id``, ``n_cells`` (cells
with a weight above 0), ``weight`` (the sum of weights: the zone's area in cells), ``<modality>_mean`` and
``<modality>_std`` (float32 lists; null for a zone without cells). :data:`ZONAL_MACRO` is the same in SQL
(``cells_zonal``), computed by DuckDB spatial on the stored hexagons.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import shapely

from geolink_store import grid
from geolink_store.constants import CELLS, H3_COLUMN, MODALITIES, WGS84, Modality
from geolink_store.errors import GeolinkError, InputError
from geolink_store.store import Store, parent_column
from geolink_store.store.vector_rows import vector_rows

if TYPE_CHECKING:
    import geopandas as gpd

STATS = ("mean", "std")

_ZONAL_SQL = """
WITH z AS (SELECT row_number() OVER () AS _zone, * FROM "{0}"),
pairs AS (
    SELECT z._zone, c.model_id, c."{1}" AS v,
           ST_Area(ST_Intersection(c.geometry, z."{2}")) / ST_Area(c.geometry) AS w
    FROM cells c JOIN z ON ST_Intersects(c.geometry, z."{2}")
    WHERE c."{1}" IS NOT NULL),
per_dim AS (
    SELECT _zone, model_id, i, count(*) AS n_cells, sum(w) AS weight, sum(w * x) / sum(w) AS m,
           sqrt(greatest(sum(w * x * x) / sum(w) - pow(sum(w * x) / sum(w), 2), 0)) AS s
    FROM (SELECT _zone, model_id, w, unnest(v)::DOUBLE AS x, generate_subscripts(v, 1) AS i
          FROM pairs WHERE w > 0)
    GROUP BY ALL),
per_zone AS (
    SELECT _zone, model_id, any_value(n_cells) AS n_cells, any_value(weight) AS weight,
           list(m ORDER BY i)::FLOAT[] AS mean, list(s ORDER BY i)::FLOAT[] AS std
    FROM per_dim GROUP BY _zone, model_id)
SELECT z.* EXCLUDE (_zone), p.model_id, coalesce(p.n_cells, 0) AS n_cells, coalesce(p.weight, 0) AS weight,
       p.mean AS "{1}_mean", p.std AS "{1}_std"
FROM z LEFT JOIN per_zone p USING (_zone) ORDER BY z._zone, p.model_id
"""
ZONAL_MACRO = (
    "CREATE MACRO cells_zonal(zones, modality := 'fused', geom := 'geom') AS TABLE FROM query(CASE "
    "WHEN NOT regexp_full_match(zones, '[A-Za-z_][A-Za-z0-9_]*') "
    "OR NOT regexp_full_match(geom, '[A-Za-z_][A-Za-z0-9_]*') "
    "THEN 'SELECT error(''cells_zonal: zones and geom must be plain table and column names'')' "
    f"WHEN modality NOT IN ({', '.join(repr(m) for m in MODALITIES)}) "
    f"THEN 'SELECT error(''cells_zonal: modality must be one of {', '.join(MODALITIES)}'')' "
    "ELSE format('" + _ZONAL_SQL.replace("'", "''") + "', zones, modality, geom) END)"
)
"""``cells_zonal(zones, modality := 'fused', geom := 'geom')``: :func:`zonal_stats` in SQL, per zone and
model, over a table of zones (a ``--file`` layer or a TEMP table) whose polygons are in column ``geom``."""


def zonal_stats(
    store: Store,
    zones: str | os.PathLike | gpd.GeoDataFrame,
    *,
    modality: Modality = "fused",
    stats: Sequence[str] = STATS,
    res: int | None = None,
    model_id: str | None = None,
    epoch: str | None = None,
) -> gpd.GeoDataFrame:
    """Per zone, the count and area-weighted statistics of its cells' ``modality`` vectors (module docstring).

    Args:
        store: a store with a ``cells`` table.
        zones: a vector file (GeoJSON, GPKG, GeoParquet...) or a GeoDataFrame of polygons, in any CRS.
        modality: the vector column.
        stats: any of ``mean``, ``std``.
        res: weigh cells by the coverage of their parents at this resolution (default: the store's).
        model_id: whose vectors (default: the store's only model).
        epoch: of which epoch (default: the latest).

    Raises:
        GeolinkError: unreadable or empty zones, an unknown modality or statistic, a resolution finer than
            the store's, or zone columns that clash with the output's.
    """
    frame = _read_zones(zones)
    stats = _check_stats(stats, modality)
    model_id = store.default_model(model_id)
    epoch = store.default_epoch(epoch, model_id=model_id)
    store_res = store.resolution(model_id)
    res = store_res if res is None else grid.check_resolution(res)
    if res > store_res:
        raise InputError(f"res={res} must be coarser than or equal to the store's resolution {store_res}")
    outputs = ["model_id", "epoch", "n_cells", "weight", *(f"{modality}_{name}" for name in stats)]
    clash = sorted(set(outputs) & set(frame.columns))
    if clash:
        raise InputError(f"zones have columns named like the output's ({', '.join(clash)}): rename them")
    keys, vectors = _stored(
        store, modality, store.rows_filter(CELLS, model_id, epoch), res if res < store_res else None
    )
    weights = _weights(frame.geometry.values, res, keys)
    sums = weights @ vectors
    total = np.asarray(weights.sum(axis=1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / total[:, None]
        spread = np.sqrt(np.maximum(weights @ (vectors * vectors) / total[:, None] - mean * mean, 0))
    empty = total == 0
    result = frame.copy()
    result["model_id"] = model_id
    result["epoch"] = epoch
    result["n_cells"] = np.diff(weights.indptr)
    result["weight"] = total
    for name, values in (("mean", mean), ("std", spread)):
        if name in stats:
            result[f"{modality}_{name}"] = [
                None if e else v.astype(np.float32) for e, v in zip(empty, values, strict=True)
            ]
    return result


def write_zonal_stats(
    store: Store, zones: str | os.PathLike, out: str | os.PathLike, **options: object
) -> int:
    """:func:`zonal_stats` written to ``out`` as GeoParquet (EPSG:4326); returns the number of zones.

    Raises:
        GeolinkError: as :func:`zonal_stats`, or an output folder that does not exist.
    """
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"output folder {out.parent} does not exist")
    result = zonal_stats(store, zones, **options)
    result.to_parquet(out, index=False)
    return len(result)


def _read_zones(zones: str | os.PathLike | gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    import geopandas as gpd

    if isinstance(zones, gpd.GeoDataFrame):
        frame = zones
    else:
        path = Path(zones)
        if not path.is_file():
            raise InputError(f"zones file {path} does not exist")
        try:
            frame = gpd.read_parquet(path) if path.suffix.lower() == ".parquet" else gpd.read_file(path)
        except Exception as error:  # pyogrio/pyarrow raise many types for unreadable files
            raise InputError(f"cannot read zones file {path}: {' '.join(str(error).split())}") from error
    if frame.empty:
        raise InputError("zones hold no features")
    if frame.crs is None:
        raise InputError("zones have no CRS; save them with one (e.g. EPSG:4326)")
    frame = frame.to_crs(WGS84)
    polygonal = np.isin(shapely.get_type_id(frame.geometry.values), [3, 6])  # Polygon, MultiPolygon
    if not polygonal.any():
        raise InputError("zones hold no polygon; zonal statistics need areas")
    return frame


def _check_stats(stats: Sequence[str], modality: str) -> list[str]:
    if modality not in MODALITIES:
        raise InputError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    unknown = [name for name in stats if name not in STATS]
    if unknown or not stats:
        raise InputError(f"stats must be one or more of {', '.join(STATS)}, got {', '.join(stats) or 'none'}")
    return list(dict.fromkeys(stats))


def _stored(
    store: Store, modality: str, rows_filter: str, parent_res: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Of the rows matching ``rows_filter``: each cell's key (its id, or parent at ``parent_res``), vector."""
    key = H3_COLUMN if parent_res is None else parent_column(parent_res)
    rows = vector_rows(store, CELLS, rows_filter, [key], [modality], non_null=[modality])
    if rows.num_rows == 0:
        raise GeolinkError(f"the store has no {modality!r} vectors for this model and epoch")
    column = rows[modality].combine_chunks()
    width = column.type.list_size if pa.types.is_fixed_size_list(column.type) else len(column[0])
    vectors = column.flatten().to_numpy().astype(np.float32, copy=False).reshape(-1, width)
    return rows[key].to_numpy(), vectors


def _weights(geometries: np.ndarray, res: int, keys: np.ndarray):  # noqa: ANN202 (a scipy sparse matrix)
    """The zones x stored cells matrix of coverage weights (CSR, float32)."""
    from scipy.sparse import csr_matrix

    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    zone, cells, shares = grid.cover_shares(geometries, res)
    first = np.searchsorted(sorted_keys, cells, "left")
    counts = np.searchsorted(sorted_keys, cells, "right") - first
    rows = order[np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())]
    weights = np.repeat(shares, counts).astype(np.float32)
    return csr_matrix((weights, (np.repeat(zone, counts), rows)), shape=(len(geometries), len(keys)))


__all__ = ["STATS", "ZONAL_MACRO", "write_zonal_stats", "zonal_stats"]
