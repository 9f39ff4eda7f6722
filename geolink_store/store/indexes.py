"""Vector and scalar indexes: built once a searched table is large enough, refreshed as rows arrive.

Only ``cells`` is indexed (:data:`INDEXED_COLUMNS`): similarity search (``geolink_store.query.search``) reads
``cells`` alone, while ``patches`` are read whole (heads), where an index would cost space and upkeep for
nothing. Below :data:`INDEX_MIN_ROWS` rows search is exact (flat). :func:`build_indexes` builds one
``IVF_HNSW_SQ`` index per vector column and scalar indexes on the key columns; rows written later are folded
in (:func:`fold_new_rows`) into one merged segment per index. See ``geolink_store.query.search`` for the query
parameters that keep recall@10 >= 0.95.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from geolink_store.constants import CELLS, H3_COLUMN, MODEL_COLUMN
from geolink_store.store._lance import dataset
from geolink_store.store.schema import VECTOR_COLUMNS

if TYPE_CHECKING:
    import lancedb
    from lance import LanceDataset

METRIC = "cosine"
INDEX_MIN_ROWS = 50_000
INDEX_TYPE = "IVF_HNSW_SQ"
ROWS_PER_PARTITION = 4096
SCALAR_INDEXES = ((H3_COLUMN, "BTREE"), (MODEL_COLUMN, "BITMAP"))
INDEXED_COLUMNS: dict[str, tuple[str, ...]] = {CELLS: VECTOR_COLUMNS[CELLS]}
"""The vector columns that get an ANN index: those search reads."""
REFRESH_SHARE = 0.25
"""Writes fold new rows into an index once they reach this share of the indexed rows (fewer are searched
exactly beside the index, which costs little), so an ingest makes a few index commits rather than one per
batch."""


def build_indexes(
    target: lancedb.table.Table, table: str, min_rows: int = INDEX_MIN_ROWS, refresh_share: float = 0.0
) -> list[str]:
    """Build an ANN index on each indexed vector column of ``target`` (table ``table``) of ``min_rows`` rows.

    A column that already has an index gets its unindexed rows folded in instead, once they exceed
    ``refresh_share`` of its indexed rows. Until a table reaches ``min_rows`` rows search stays exact, which
    is both correct and fast at that size.

    Returns:
        The vector columns whose index was built or refreshed.
    """
    vectors = [column for column in INDEXED_COLUMNS.get(table, ()) if column in target.schema.names]
    rows = target.count_rows()
    if not vectors or rows < min_rows:
        return []
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
    stale = [column for column in indexed & set(vectors) if _stale(target, column, rows, refresh_share)]
    if stale:
        fold_new_rows(dataset(target.uri, "refreshing indexes"))
    return sorted(missing + stale)


def fold_new_rows(ds: LanceDataset) -> bool:
    """Fold unindexed rows into every index and merge each index's segments into one; whether it committed."""
    indexes = ds.describe_indices()
    segments = max((len(index.segments) for index in indexes), default=0)
    fragments = set(ds.fragment_ids())
    unindexed = any(
        fragments - {f for segment in index.segments for f in segment.fragment_ids} for index in indexes
    )
    if segments > 1 or (segments and unindexed):
        ds.optimize.optimize_indices(num_indices_to_merge=segments)
        return True
    return False


def index_state(target: lancedb.table.Table) -> dict[str, Any]:
    """A table's indexes (columns, type, segments, rows not yet indexed) and how it is searched."""
    indexes = {}
    for index in target.list_indices():
        stats = target.index_stats(index.name)
        indexes[index.name] = {
            "columns": list(index.columns),
            "type": index.index_type,
            "segments": stats.num_indices if stats is not None else 0,
            "unindexed_rows": int(stats.num_unindexed_rows) if stats is not None else 0,
        }
    ann = any(index["type"] != "BTree" and index["type"] != "Bitmap" for index in indexes.values())
    return {"indexes": indexes, "search": "ann" if ann else "exact"}


def _stale(target: lancedb.table.Table, column: str, rows: int, share: float) -> bool:
    """Whether the rows ``column``'s index lacks exceed ``share`` of those it holds (any, for share 0)."""
    unindexed = _unindexed_rows(target, column)
    return unindexed > share * (rows - unindexed)


def _unindexed_rows(target: lancedb.table.Table, column: str) -> int:
    for index in target.list_indices():
        if column in index.columns:
            stats = target.index_stats(index.name)
            return int(stats.num_unindexed_rows) if stats is not None else 0
    return target.count_rows()
