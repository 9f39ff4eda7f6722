"""Rows into tables: each batch conformed to the stored schema, keys checked, merged in one Lance commit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import lancedb
import pyarrow as pa

from geolink_store.errors import InputError
from geolink_store.store.quantize import layout_of
from geolink_store.store.schema import TABLE_KEYS, VECTOR_COLUMNS

Rows = pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch | pa.Table]
"""What an upsert takes: a Table, a RecordBatch, or an iterable of them (streamed batch by batch)."""


def batches(data: Rows) -> Iterator[pa.Table]:
    """``data`` as a stream of non-empty tables, one per commit."""
    if isinstance(data, pa.RecordBatch | pa.Table):
        data = [data]
    for part in data:
        if part.num_rows:
            yield pa.Table.from_batches([part]) if isinstance(part, pa.RecordBatch) else part


def merge(target: lancedb.table.Table, table: str, batch: pa.Table) -> tuple[int, int]:
    """Insert or replace the rows of ``batch`` in ``target`` by key, in one commit.

    Returns:
        The rows inserted and the rows replaced.

    Raises:
        InputError: the batch does not fit the table's schema, or repeats a key.
    """
    keys = list(TABLE_KEYS[table])
    batch = prepared(table, batch, target.schema)
    result = (
        target.merge_insert(keys)
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute(batch, on_bad_vectors="null")  # the nullable osm column may hold nulls
    )
    return result.num_inserted_rows, result.num_updated_rows


def prepared(table: str, batch: pa.Table, schema: pa.Schema) -> pa.Table:
    """``batch`` conformed to ``schema`` (see :func:`conform`), each key once.

    Raises:
        InputError: the batch does not fit the schema, or repeats a key.
    """
    batch = conform(table, batch, schema)
    keys = list(TABLE_KEYS[table])
    if batch.group_by(keys).aggregate([]).num_rows != batch.num_rows:
        raise InputError(
            f"rows for {table!r} repeat a key ({', '.join(keys)}); each key may appear once per batch"
        )
    return batch


def conform(table: str, batch: pa.Table, schema: pa.Schema) -> pa.Table:
    """``batch`` with the store's column order and types.

    Raises:
        InputError: vectors in another layout (float32, int8, both), a column missing or extra, a vector of
            another width, or a value that does not cast.
    """
    vectors = VECTOR_COLUMNS.get(table, ())
    if layout_of(batch.schema, vectors) != layout_of(schema, vectors):
        raise InputError(
            f"rows for {table!r} hold {layout_of(batch.schema, vectors)} vectors but the store's table holds "
            f"{layout_of(schema, vectors)} ones (a table keeps the layout it was created with)"
        )
    for field in schema:
        if field.name not in batch.schema.names:
            raise InputError(f"rows for {table!r} lack column {field.name!r} that the store has")
        given = batch.schema.field(field.name).type
        if pa.types.is_fixed_size_list(field.type) and given != field.type:
            width = given.list_size if pa.types.is_fixed_size_list(given) else "variable"
            raise InputError(
                f"{table}.{field.name} vectors have width {field.type.list_size} in the store "
                f"but the new rows have width {width}"
            )
    extra = [name for name in batch.schema.names if name not in schema.names]
    if extra:
        raise InputError(f"rows for {table!r} have columns the store lacks: {', '.join(extra)}")
    try:
        return batch.select(schema.names).cast(schema)
    except (pa.ArrowException, ValueError) as error:  # a null in a non-nullable column is a plain ValueError
        raise InputError(f"rows for {table!r} do not match the store's schema: {error}") from error
