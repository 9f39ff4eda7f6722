"""Vector and scalar indexes: built once a table is large enough, refreshed as rows arrive.

Below :data:`INDEX_MIN_ROWS` rows search is exact (flat). :func:`build_indexes` builds one ``IVF_HNSW_SQ``
index per vector column and scalar indexes on the key columns; later rows are folded in by ``optimize`` on the
next call. See ``geolink_store.query.search`` for the query parameters that keep recall@10 >= 0.95.
"""

from __future__ import annotations

import math
from typing import Any

import lancedb

from geolink_store.constants import H3_COLUMN, MODEL_COLUMN
from geolink_store.store.schema import VECTOR_COLUMNS

METRIC = "cosine"
INDEX_MIN_ROWS = 50_000
INDEX_TYPE = "IVF_HNSW_SQ"
ROWS_PER_PARTITION = 4096
SCALAR_INDEXES = ((H3_COLUMN, "BTREE"), (MODEL_COLUMN, "BITMAP"))


def build_indexes(target: lancedb.table.Table, table: str, min_rows: int = INDEX_MIN_ROWS) -> list[str]:
    """Build an ANN index on every vector column of ``target`` (table ``table``) if it has ``min_rows`` rows.

    A column that already has an index gets its new rows folded in (``optimize``) instead. Until a table
    reaches ``min_rows`` rows search stays exact, which is both correct and fast at that size.

    Returns:
        The vector columns whose index was built or refreshed.
    """
    rows = target.count_rows()
    if rows < min_rows:
        return []
    vectors = VECTOR_COLUMNS.get(table, ())
    indexed = {column for index in target.list_indices() for column in index.columns}
    missing = [
        column
        for column in vectors
        if column not in indexed and target.count_rows(f"{column} IS NOT NULL") > 0
    ]
    for column in missing:
        target.create_index(
            metric=METRIC,
            vector_column_name=column,
            index_type=INDEX_TYPE,
            num_partitions=max(1, math.ceil(rows / ROWS_PER_PARTITION)),
        )
    for column, kind in SCALAR_INDEXES:
        if column not in indexed:
            target.create_scalar_index(column, index_type=kind)
    stale = [column for column in indexed & set(vectors) if _unindexed_rows(target, column)]
    if stale:
        target.optimize()
    return sorted(missing + stale)


def index_state(target: lancedb.table.Table) -> dict[str, Any]:
    """A table's indexes (columns, type, rows not yet indexed) and how it is searched (``ann``, ``exact``)."""
    indexes = {
        index.name: {
            "columns": list(index.columns),
            "type": index.index_type,
            "unindexed_rows": _unindexed_rows(target, index.columns[0]),
        }
        for index in target.list_indices()
    }
    ann = any(index["type"] != "BTree" for index in indexes.values())
    return {"indexes": indexes, "search": "ann" if ann else "exact"}


def _unindexed_rows(target: lancedb.table.Table, column: str) -> int:
    for index in target.list_indices():
        if column in index.columns:
            stats = target.index_stats(index.name)
            return int(stats.num_unindexed_rows) if stats is not None else 0
    return target.count_rows()
