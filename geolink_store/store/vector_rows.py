"""Rows with their vectors as float32 whatever the table's layout: int8 codes are read dequantised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from geolink_store.store.quantize import float_vectors, stored_columns

if TYPE_CHECKING:
    from geolink_store.store.store import Store


def vector_rows(
    store: Store,
    table: str,
    where: str | None,
    columns: Sequence[str],
    vectors: Sequence[str],
    *,
    non_null: Sequence[str] = (),
) -> pa.Table:
    """The rows of ``table`` matching ``where``: ``columns`` as stored, then ``vectors`` as float32.

    Args:
        store: the store.
        table: the table (``cells``, ``patches``).
        where: a Lance SQL filter, or None for every row.
        columns: the plain columns to read.
        vectors: the vector columns to read: float32 where stored so, else dequantised int8 codes
            (:mod:`geolink_store.store.quantize`).
        non_null: the vectors a row must have to be read.
    """
    target = store.table(table)
    schema = target.schema
    conditions = [where, *(f"{stored_columns(schema, name)[0]} IS NOT NULL" for name in non_null)]
    read = [*columns, *(column for name in vectors for column in stored_columns(schema, name))]
    query = target.search().select(read).limit(None)
    found = " AND ".join(f"({part})" for part in conditions if part)
    rows = (query.where(found) if found else query).to_arrow()
    return pa.table(
        {**{name: rows[name] for name in columns}, **{name: float_vectors(rows, name) for name in vectors}}
    )
