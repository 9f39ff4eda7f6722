"""Every table's columns, keys and vector columns, declared once (docs/design.md says what each row means)."""

from __future__ import annotations

import pyarrow as pa

from geolink_store.constants import (
    CELLS,
    DEFAULT_EPOCH,
    EPOCH_COLUMN,
    H3_COLUMN,
    HEADS,
    IMAGERY,
    MODEL_COLUMN,
    MODELS,
    PATCHES,
    PREDICTIONS,
)
from geolink_store.store.quantize import VectorLayout, codes_column, layout_of, scale_column

HEAD_COLUMN = "head_id"
PARENT_COLUMN = "parent"
"""The ``patches`` column holding the H3 id of the cell whose chip holds the patch."""

SOURCE_COLUMN = "source"
ACQUIRED_COLUMN = "acquired"

TABLE_KEYS: dict[str, tuple[str, ...]] = {
    CELLS: (H3_COLUMN, MODEL_COLUMN, EPOCH_COLUMN),
    PATCHES: (H3_COLUMN, MODEL_COLUMN, EPOCH_COLUMN),
    MODELS: (MODEL_COLUMN,),
    HEADS: (HEAD_COLUMN,),
    PREDICTIONS: (HEAD_COLUMN, H3_COLUMN, EPOCH_COLUMN),
    IMAGERY: (SOURCE_COLUMN, EPOCH_COLUMN),
}
"""The columns that identify a row: writing a row with the key of a stored one replaces it."""
LATER_COLUMNS: dict[str, dict[str, str]] = {
    CELLS: {EPOCH_COLUMN: f"'{DEFAULT_EPOCH}'", ACQUIRED_COLUMN: "CAST(NULL AS DATE)"},
    PATCHES: {EPOCH_COLUMN: f"'{DEFAULT_EPOCH}'"},
    PREDICTIONS: {EPOCH_COLUMN: f"'{DEFAULT_EPOCH}'"},
}
"""Columns added after the first release, each with the SQL value its rows take in a store written before
(every such row belongs to the default epoch and has no recorded acquisition date): readers assume that
value where the column is missing; the first write adds the column (:mod:`geolink_store.store.epochs`)."""
VECTOR_COLUMNS: dict[str, tuple[str, ...]] = {
    CELLS: ("image", "osm", "fused"),
    PATCHES: ("image", "fused"),
}
"""The searchable vector columns of each table."""
CELL_KEY: dict[str, str] = {CELLS: H3_COLUMN, PATCHES: PARENT_COLUMN}
"""The column tying a row to the cell it was encoded for: re-encoding a cell replaces its rows."""


def parent_resolutions(res: int) -> range:
    """The coarser resolutions that get an ``h3_r{k}`` parent column in ``cells``: every k in 0..res-1.

    All of them, because they cost 8 bytes per level (a 256-d vector costs 1 KiB) and make every rollup and
    every parent filter a plain integer comparison.
    """
    return range(res)


def parent_column(res: int) -> str:
    """The name of the parent column at resolution ``res``."""
    return f"h3_r{res}"


def vector_type(width: int) -> pa.DataType:
    """The type of a stored vector: ``width`` float32 values."""
    return pa.list_(pa.float32(), width)


def vector_fields(name: str, width: int, layout: VectorLayout) -> list[pa.Field]:
    """The nullable columns of vector ``name`` in ``layout``.

    ``float32``: the column ``name`` (float32 x width). ``int8``: ``name_i8`` (int8 x width, the codes) and
    ``name_scale`` (float32, one per vector) instead, as :mod:`geolink_store.store.quantize` writes them, a
    quarter of the bytes. ``both``: all three, in that order. A null vector is null in each of its columns.
    """
    floats = [pa.field(name, vector_type(width), nullable=True)] if layout != "int8" else []
    codes = [
        pa.field(codes_column(name), pa.list_(pa.int8(), width), nullable=True),
        pa.field(scale_column(name), pa.float32(), nullable=True),
    ]
    return floats + (codes if layout != "float32" else [])


def cells_schema(
    image_dim: int, osm_dim: int, fused_dim: int, res: int, vectors: VectorLayout = "float32"
) -> pa.Schema:
    """The ``cells`` table schema for vectors of the given widths and cells at H3 resolution ``res``.

    ``vectors`` is the layout of the ``image``, ``osm`` and ``fused`` vectors (:func:`vector_fields`): a
    table keeps the layout it was created with.
    """
    return pa.schema(
        [
            pa.field(H3_COLUMN, pa.int64(), nullable=False),
            pa.field("res", pa.int8(), nullable=False),
            *[pa.field(parent_column(k), pa.int64(), nullable=False) for k in parent_resolutions(res)],
            pa.field("lon", pa.float64(), nullable=False),
            pa.field("lat", pa.float64(), nullable=False),
            pa.field("geometry", pa.binary(), nullable=False),  # WKB hexagon, EPSG:4326
            *vector_fields("image", image_dim, vectors),  # null for cells encoded OSM-only
            *vector_fields("osm", osm_dim, vectors),  # null where the cell has no OSM
            *vector_fields("fused", fused_dim, vectors),  # null for cells encoded OSM-only
            pa.field("n_point", pa.int32(), nullable=False),
            pa.field("n_line", pa.int32(), nullable=False),
            pa.field("n_polygon", pa.int32(), nullable=False),
            pa.field(SOURCE_COLUMN, pa.string(), nullable=False),  # the imagery read, ``+``-joined
            pa.field(MODEL_COLUMN, pa.string(), nullable=False),
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field(EPOCH_COLUMN, pa.string(), nullable=False),
            pa.field(ACQUIRED_COLUMN, pa.date32(), nullable=True),  # where the imagery says when it was taken
        ]
    )


def patches_schema(image_dim: int, fused_dim: int) -> pa.Schema:
    """The ``patches`` table schema: fine H3 cells, their parent cell and averaged patch vectors."""
    return pa.schema(
        [
            pa.field(H3_COLUMN, pa.int64(), nullable=False),
            pa.field("res", pa.int8(), nullable=False),
            pa.field(PARENT_COLUMN, pa.int64(), nullable=False),
            pa.field("image", vector_type(image_dim), nullable=True),  # null for cells encoded OSM-only
            pa.field("fused", vector_type(fused_dim), nullable=False),
            pa.field(MODEL_COLUMN, pa.string(), nullable=False),
            pa.field(EPOCH_COLUMN, pa.string(), nullable=False),
        ]
    )


MODELS_SCHEMA = pa.schema(
    [
        pa.field(MODEL_COLUMN, pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("architecture", pa.string(), nullable=False),
        pa.field("config", pa.string(), nullable=False),  # JSON
        pa.field("text_encoder", pa.string(), nullable=False),
        pa.field("created", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
"""One row per model (``model_id`` is ``model.fingerprint``)."""

HEADS_SCHEMA = pa.schema(
    [
        pa.field(HEAD_COLUMN, pa.string(), nullable=False),
        pa.field(MODEL_COLUMN, pa.string(), nullable=False),
        pa.field("table", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("dim", pa.int32(), nullable=False),
        pa.field("classes", pa.string(), nullable=False),  # JSON list
        pa.field("metrics", pa.string(), nullable=False),  # JSON object
        pa.field("weights", pa.binary(), nullable=False),  # safetensors bytes
        pa.field("labels", pa.string(), nullable=False),  # the labels file and column it was trained on
        pa.field("created", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
"""One row per trained head."""

PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field(HEAD_COLUMN, pa.string(), nullable=False),
        pa.field(H3_COLUMN, pa.int64(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),  # the probability of the label
        pa.field(
            "probabilities", pa.list_(pa.float32()), nullable=False
        ),  # one per class, in the head's order
        pa.field(MODEL_COLUMN, pa.string(), nullable=False),
        pa.field(EPOCH_COLUMN, pa.string(), nullable=False),
    ]
)
"""One row per head, cell (or patch) and epoch; ``probabilities`` has no fixed width: any number of classes
fits."""

IMAGERY_SCHEMA = pa.schema(
    [
        pa.field(SOURCE_COLUMN, pa.string(), nullable=False),  # the name written in ``cells.source``
        pa.field(EPOCH_COLUMN, pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),  # the raster file or tile folder, absolute
        pa.field("options", pa.string(), nullable=False),  # JSON: how it was read (bands, value range...)
        pa.field("west", pa.float64(), nullable=False),
        pa.field("south", pa.float64(), nullable=False),
        pa.field("east", pa.float64(), nullable=False),
        pa.field("north", pa.float64(), nullable=False),
        pa.field(ACQUIRED_COLUMN, pa.date32(), nullable=True),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
"""One row per imagery source and epoch an ingest read: where it is, so that its pixels can be shown again."""

DECLARED_SCHEMAS: dict[str, pa.Schema] = {
    MODELS: MODELS_SCHEMA,
    HEADS: HEADS_SCHEMA,
    PREDICTIONS: PREDICTIONS_SCHEMA,
    IMAGERY: IMAGERY_SCHEMA,
}
"""The tables whose schema is fixed; ``cells`` and ``patches`` take the vector widths of their first rows."""


def expected_schema(table: str, stored: pa.Schema) -> pa.Schema | None:
    """The schema geolink writes for ``table``, with the vector widths and resolution of ``stored``.

    A table from before a :data:`LATER_COLUMNS` column existed is expected without it, and one that gained it
    later (nullable, as columns added to a Lance table are) is expected so. None for a table geolink does not
    declare (one made with ``geolink sql --write``, say).
    """
    schema = _declared_schema(table, stored)
    if schema is None:
        return None
    for name in LATER_COLUMNS.get(table, {}):
        if name not in stored.names:
            schema = schema.remove(schema.get_field_index(name))
        else:
            index = schema.get_field_index(name)
            schema = schema.set(index, schema.field(index).with_nullable(stored.field(name).nullable))
    return schema


def _declared_schema(table: str, stored: pa.Schema) -> pa.Schema | None:
    if table in DECLARED_SCHEMAS:
        return DECLARED_SCHEMAS[table]
    widths = {field.name: field.type.list_size for field in stored if pa.types.is_fixed_size_list(field.type)}
    if table == CELLS:
        res = sum(name.startswith("h3_r") for name in stored.names)
        dims = [widths.get(name, widths.get(codes_column(name), 0)) for name in VECTOR_COLUMNS[CELLS]]
        return cells_schema(*dims, res, layout_of(stored, VECTOR_COLUMNS[CELLS]))
    if table == PATCHES:
        return patches_schema(widths.get("image", 0), widths.get("fused", 0))
    return None
