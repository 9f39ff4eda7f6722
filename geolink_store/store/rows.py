"""``cells`` and ``patches`` rows built from arrays, to the schemas of :mod:`geolink_store.store.schema`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import shapely

from geolink_store.constants import CELLS, EPOCH_COLUMN, H3_COLUMN, MODEL_COLUMN, NODE_COUNT_COLUMNS
from geolink_store.grid import cell_geometries, cell_lonlat, parents
from geolink_store.store.quantize import VectorLayout, with_layout
from geolink_store.store.schema import (
    IMAGERY_SCHEMA,
    PARENT_COLUMN,
    VECTOR_COLUMNS,
    cells_schema,
    parent_column,
    parent_resolutions,
    patches_schema,
    vector_type,
)


def cell_rows(
    cells: np.ndarray,
    *,
    res: int,
    model_id: str,
    epoch: str,
    sources: list[str],
    acquired: list[date | None],
    widths: Mapping[str, int],
    image: np.ndarray | None,
    osm: np.ndarray,
    has_osm: np.ndarray,
    fused: np.ndarray | None,
    node_counts: Mapping[str, np.ndarray],
    vectors: VectorLayout = "float32",
) -> pa.Table:
    """``cells`` rows, one per H3 id in ``cells``.

    Args:
        cells: the H3 ids.
        res: their resolution.
        model_id: the model that encoded them.
        epoch: the epoch they belong to.
        sources: the imagery of each cell (``osm-only`` for cells encoded without imagery).
        acquired: when each cell's imagery was taken, where it says so.
        widths: the width of each vector column (``image``, ``osm``, ``fused``).
        image: (N, D) image vectors, or None for cells encoded from OSM alone (the column is then null).
        osm: (N, D) OSM region vectors; rows where ``has_osm`` is False are stored as null.
        has_osm: (N,) whether each cell has OSM.
        fused: (N, D) fused vectors, or None like ``image``.
        node_counts: the OSM nodes of each cell, keyed by column (``n_point``, ``n_line``, ``n_polygon``).
        vectors: how the vectors are stored: float32, int8 codes with a scale per vector, or both
            (:func:`~geolink_store.store.schema.vector_fields`).
    """
    cells = np.asarray(cells, dtype=np.int64)
    lon, lat = cell_lonlat(cells)
    columns = {
        H3_COLUMN: cells,
        "res": np.full(cells.size, res, dtype=np.int8),
        **{parent_column(k): parents(cells, k) for k in parent_resolutions(res)},
        "lon": lon,
        "lat": lat,
        "geometry": shapely.to_wkb(cell_geometries(cells)),
        "image": _vectors(image, widths["image"], cells.size),
        "osm": pa.array(
            [row.tolist() if has else None for row, has in zip(osm, has_osm.tolist(), strict=True)],
            type=vector_type(osm.shape[1]),
        ),
        "fused": _vectors(fused, widths["fused"], cells.size),
        **{name: np.asarray(node_counts[name], dtype=np.int32) for name in NODE_COUNT_COLUMNS},
        "source": sources,
        MODEL_COLUMN: [model_id] * cells.size,
        "created_at": pa.array([datetime.now(UTC)] * cells.size, type=pa.timestamp("us", tz="UTC")),
        EPOCH_COLUMN: [epoch] * cells.size,
        "acquired": pa.array(acquired, type=pa.date32()),
    }
    dims = (widths["image"], widths["osm"], widths["fused"])
    rows = pa.Table.from_pydict(columns, schema=cells_schema(*dims, res))
    return with_layout(rows, VECTOR_COLUMNS[CELLS], vectors).cast(cells_schema(*dims, res, vectors))


def patch_rows(
    h3_ids: np.ndarray,
    parent: np.ndarray,
    *,
    res: int,
    model_id: str,
    epoch: str,
    image: np.ndarray,
    fused: np.ndarray,
) -> pa.Table:
    """``patches`` rows: fine H3 ids at ``res``, the cell each belongs to, (N, D) image and fused vectors."""
    columns = {
        H3_COLUMN: h3_ids,
        "res": np.full(h3_ids.size, res, dtype=np.int8),
        PARENT_COLUMN: parent,
        "image": _vectors(image, image.shape[1], len(image)),
        "fused": _vectors(fused, fused.shape[1], len(fused)),
        MODEL_COLUMN: [model_id] * h3_ids.size,
        EPOCH_COLUMN: [epoch] * h3_ids.size,
    }
    return pa.Table.from_pydict(columns, schema=patches_schema(image.shape[1], fused.shape[1]))


def _vectors(values: np.ndarray | None, width: int, rows: int) -> pa.FixedSizeListArray:
    """A fixed-width float32 vector column; all null when ``values`` is None."""
    if values is None:
        return pa.nulls(rows, type=vector_type(width))
    array = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(array.ravel()), width)


def imagery_rows(
    names: list[str],
    uris: list[str],
    bounds: list[tuple[float, float, float, float]],
    acquired: list[date | None],
    *,
    epoch: str,
    options: Mapping[str, object] | None = None,
) -> pa.Table:
    """``imagery`` rows: each source's name, location, lon/lat bounds and acquisition date, in one epoch."""
    west, south, east, north = (list(side) for side in zip(*bounds, strict=True))
    columns = {
        "source": names,
        EPOCH_COLUMN: [epoch] * len(names),
        "uri": uris,
        "options": [json.dumps(dict(options or {}), sort_keys=True)] * len(names),
        "west": west,
        "south": south,
        "east": east,
        "north": north,
        "acquired": pa.array(acquired, type=pa.date32()),
        "created_at": pa.array([datetime.now(UTC)] * len(names), type=pa.timestamp("us", tz="UTC")),
    }
    return pa.Table.from_pydict(columns, schema=IMAGERY_SCHEMA)
