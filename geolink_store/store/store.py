"""The LanceDB store: one directory per store, one Lance table per kind of row, idempotent atomic upserts.

Tables (see docs/design.md): ``cells`` (one row per H3 cell and model), ``patches`` (one row per fine H3 cell
and model), ``models`` (one row per model), ``heads`` (trained heads) and ``predictions`` (one row per head and cell),
the last two written by ``geolink_store.heads.from_store``.

Every ``upsert`` is one LanceDB ``merge_insert`` per batch, keyed on :data:`TABLE_KEYS`: a batch is one Lance
commit that lands whole or not at all, and re-writing a row replaces it. A killed writer therefore leaves
whole batches behind; rerunning it (optionally skipping :meth:`Store.existing_cells`) ends with exactly the
rows of an uninterrupted run.

Vector indexes: below :data:`INDEX_MIN_ROWS` rows search is exact (flat). :meth:`Store.build_indexes` (called
by ``geolink index`` and automatically by :meth:`Store.upsert` once a table passes the threshold) builds one
``IVF_HNSW_SQ`` index per vector column; later rows are folded in by ``optimize`` on the next call. See
``geolink_store.query.search`` for the query parameters that keep recall@10 >= 0.95.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from geolink_store.constants import H3_COLUMN, MODEL_COLUMN
from geolink_store.errors import GeolinkError

SCALAR_INDEXES = ((H3_COLUMN, "BTREE"), (MODEL_COLUMN, "BITMAP"))
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "cells": (H3_COLUMN, MODEL_COLUMN),
    "patches": (H3_COLUMN, MODEL_COLUMN),
    "models": (MODEL_COLUMN,),
    "heads": ("head_id",),
    "predictions": ("head_id", H3_COLUMN),
}
VECTOR_COLUMNS: dict[str, tuple[str, ...]] = {
    "cells": ("image", "osm", "fused"),
    "patches": ("image", "fused"),
}
METRIC = "cosine"
INDEX_MIN_ROWS = 50_000
INDEX_TYPE = "IVF_HNSW_SQ"
ROWS_PER_PARTITION = 4096


def parent_resolutions(res: int) -> range:
    """The coarser resolutions that get an ``h3_r{k}`` parent column in ``cells``: every k in 0..res-1.

    All of them, because they cost 8 bytes per level (a 256-d vector costs 1 KiB) and make every rollup and
    every ``--parent`` filter a plain integer comparison.
    """
    return range(res)


def parent_column(res: int) -> str:
    """The name of the parent column at resolution ``res``."""
    return f"h3_r{res}"


def _vector(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def cells_schema(image_dim: int, osm_dim: int, fused_dim: int, res: int) -> pa.Schema:
    """The ``cells`` table schema for vectors of the given widths and cells at H3 resolution ``res``."""
    return pa.schema(
        [
            pa.field(H3_COLUMN, pa.int64(), nullable=False),
            pa.field("res", pa.int8(), nullable=False),
            *[pa.field(parent_column(k), pa.int64(), nullable=False) for k in parent_resolutions(res)],
            pa.field("lon", pa.float64(), nullable=False),
            pa.field("lat", pa.float64(), nullable=False),
            pa.field("geometry", pa.binary(), nullable=False),  # WKB hexagon, EPSG:4326
            pa.field("image", _vector(image_dim), nullable=True),  # null for cells encoded OSM-only
            pa.field("osm", _vector(osm_dim), nullable=True),  # null where the cell has no OSM
            pa.field("fused", _vector(fused_dim), nullable=True),  # null for cells encoded OSM-only
            pa.field("n_point", pa.int32(), nullable=False),
            pa.field("n_line", pa.int32(), nullable=False),
            pa.field("n_polygon", pa.int32(), nullable=False),
            pa.field("source", pa.string(), nullable=False),  # imagery id and date
            pa.field(MODEL_COLUMN, pa.string(), nullable=False),
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        ]
    )


def patches_schema(image_dim: int, fused_dim: int) -> pa.Schema:
    """The ``patches`` table schema: fine H3 cells, their parent cell and averaged patch vectors."""
    return pa.schema(
        [
            pa.field(H3_COLUMN, pa.int64(), nullable=False),
            pa.field("res", pa.int8(), nullable=False),
            pa.field("parent", pa.int64(), nullable=False),  # the h3 of the cell whose chip holds the patch
            pa.field("image", _vector(image_dim), nullable=True),  # null for cells encoded OSM-only
            pa.field("fused", _vector(fused_dim), nullable=False),
            pa.field(MODEL_COLUMN, pa.string(), nullable=False),
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


@dataclass(frozen=True)
class UpsertResult:
    """Counts from one :meth:`Store.upsert`: rows inserted, rows replaced, Lance commits made."""

    inserted: int
    updated: int
    commits: int


class Store:
    """A geolink store: a LanceDB database holding the ``cells``, ``patches`` and ``models`` tables.

    The store is a local directory or an object-store URI (``s3://bucket/prefix``, ``gs://``, ``az://``); for the
    latter, credentials and endpoint come from the environment as LanceDB reads them (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT``...).
    """

    def __init__(self, location: str | Path, db: lancedb.DBConnection) -> None:
        """Wrap an open connection; use :meth:`open` or :meth:`create_or_open` instead."""
        self.location = str(location)
        self._db = db

    @property
    def remote(self) -> bool:
        """Whether the store lives on object storage."""
        return is_remote(self.location)

    @property
    def path(self) -> Path:
        """The local directory of the store.

        Raises:
            GeolinkError: the store is on object storage.
        """
        if self.remote:
            raise GeolinkError(
                f"store {self.location} is on object storage; this needs a local store directory"
            )
        return Path(self.location)

    @property
    def uri(self) -> str:
        """The store as an absolute path or an object-store URI."""
        return self.location.rstrip("/") if self.remote else str(Path(self.location).resolve())

    def table_uri(self, name: str) -> str:
        """The Lance dataset of table ``name`` (it need not exist yet)."""
        return f"{self.uri}/{name}.lance"

    @classmethod
    def create_or_open(cls, location: str | Path) -> Store:
        """Open the store at ``location``, creating an empty one if nothing is there."""
        if is_remote(location):
            return cls(location, lancedb.connect(str(location)))
        path = Path(location)
        if path.exists() and not path.is_dir():
            raise GeolinkError(f"store path {path} is a file; a store is a directory")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, lancedb.connect(path))

    @classmethod
    def open(cls, location: str | Path) -> Store:
        """Open an existing store.

        Raises:
            GeolinkError: nothing is at ``location`` (no directory, or no tables under the URI).
        """
        missing = GeolinkError(
            f"store {location} does not exist (create one with `geolink ingest --db {location} ...`)"
        )
        if is_remote(location):
            store = cls(location, lancedb.connect(str(location)))
            if not store.table_names():
                raise missing
            return store
        path = Path(location)
        if not path.is_dir():
            raise missing
        return cls(path, lancedb.connect(path))

    def table_names(self) -> list[str]:
        """The tables in the store, sorted."""
        return sorted(self._db.list_tables().tables)

    def table(self, name: str) -> lancedb.table.Table:
        """An open LanceDB table.

        Raises:
            GeolinkError: the store has no such table.
        """
        if name not in self.table_names():
            have = ", ".join(self.table_names()) or "none"
            raise GeolinkError(f"store {self.location} has no table {name!r} (tables: {have})")
        return self._db.open_table(name)

    def register_model(
        self,
        model_id: str,
        *,
        name: str,
        architecture: str,
        config: dict[str, Any],
        text_encoder: str,
    ) -> str:
        """Record a model once (``model_id`` is ``model.fingerprint``, a hash of config and weights); recording
        it again changes nothing.
        """
        if model_id in {m[MODEL_COLUMN] for m in self.models()}:
            return model_id
        row = {
            MODEL_COLUMN: [model_id],
            "name": [name],
            "architecture": [architecture],
            "config": [json.dumps(config, sort_keys=True)],
            "text_encoder": [text_encoder],
            "created": [datetime.now(UTC)],
        }
        self.upsert("models", pa.Table.from_pydict(row, schema=MODELS_SCHEMA))
        return model_id

    def models(self) -> list[dict[str, Any]]:
        """The registered models as dicts (``config`` parsed from JSON)."""
        if "models" not in self.table_names():
            return []
        rows = self.table("models").to_arrow().to_pylist()
        return [{**row, "config": json.loads(row["config"])} for row in rows]

    def upsert(
        self,
        table: str,
        data: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch | pa.Table],
        *,
        index: bool = True,
    ) -> UpsertResult:
        """Insert or replace rows keyed on :data:`TABLE_KEYS` (``(h3, model_id)`` for cells and patches).

        Each batch is one atomic Lance commit (``merge_insert``), so rerunning an interrupted write never
        duplicates a row. The table is created on the first write with the first batch's schema.

        Args:
            table: ``cells``, ``patches`` or ``models``.
            data: a pyarrow Table, a RecordBatch, or an iterable of them (streamed batch by batch).
            index: build or refresh the vector indexes afterwards if the table has reached
                :data:`INDEX_MIN_ROWS` rows (see :meth:`build_indexes`).

        Raises:
            GeolinkError: unknown table, or batches whose columns or vector widths differ from the store's.
        """
        if table not in TABLE_KEYS:
            raise GeolinkError(f"unknown table {table!r}; the store writes {', '.join(TABLE_KEYS)}")
        keys = list(TABLE_KEYS[table])
        inserted = updated = commits = 0
        target = self._db.open_table(table) if table in self.table_names() else None
        for batch in _batches(data):
            if batch.num_rows == 0:
                continue
            if target is None:
                target = self._db.create_table(table, schema=batch.schema, exist_ok=True)
            batch = _conform(table, batch, target.schema)
            _check_unique_keys(table, batch, keys)
            result = (
                target.merge_insert(keys)
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(batch, on_bad_vectors="null")  # the nullable osm column may hold nulls
            )
            inserted += result.num_inserted_rows
            updated += result.num_updated_rows
            commits += 1
        if index and target is not None and table in VECTOR_COLUMNS:
            self.build_indexes(table)
        return UpsertResult(inserted=inserted, updated=updated, commits=commits)

    def existing_cells(self, model_id: str, table: str = "cells") -> np.ndarray:
        """The sorted ``int64`` H3 ids already stored for ``model_id``: what a resumed ingest can skip."""
        if table not in self.table_names():
            return np.empty(0, dtype=np.int64)
        found = (
            self.table(table)
            .search()
            .where(f"{MODEL_COLUMN} = {sql_string(model_id)}")
            .select([H3_COLUMN])
            .limit(None)
            .to_arrow()
        )
        return np.sort(found[H3_COLUMN].to_numpy())

    def vector_width(self, table: str, column: str) -> int:
        """The fixed width of a vector column."""
        field = self.table(table).schema.field(column)
        return field.type.list_size

    def resolution(self, model_id: str, table: str = "cells") -> int:
        """The H3 resolution of the rows of ``model_id`` (one resolution per table and model)."""
        rows = self.table(table).search().where(f"{MODEL_COLUMN} = {sql_string(model_id)}").select(["res"])
        found = rows.limit(1).to_arrow()
        if found.num_rows == 0:
            raise GeolinkError(f"table {table!r} holds no rows for model {model_id!r}")
        return int(found["res"][0].as_py())

    def model_ids(self, table: str = "cells") -> list[str]:
        """The distinct model ids that have rows in ``table``."""
        ids = self.table(table).search().select([MODEL_COLUMN]).limit(None).to_arrow()[MODEL_COLUMN]
        return sorted(pc.unique(ids).to_pylist())

    def default_model(self, model_id: str | None = None, table: str = "cells") -> str:
        """``model_id`` if it has rows in ``table``; if None, the table's only model.

        Raises:
            GeolinkError: the model has no rows, or none was named and several models share the table.
        """
        if model_id is not None and self._has_rows(table, f"{MODEL_COLUMN} = {sql_string(model_id)}"):
            return model_id
        ids = self.model_ids(table)
        if model_id is None:
            if len(ids) == 1:
                return ids[0]
            if not ids:
                raise GeolinkError(f"table {table!r} in {self.path} is empty")
            raise GeolinkError(
                f"table {table!r} holds several models ({', '.join(ids)}); pass --model MODEL_ID"
            )
        raise GeolinkError(
            f"model {model_id!r} has no rows in {table!r} (models: {', '.join(ids) or 'none'})"
        )

    def _has_rows(self, table: str, where: str) -> bool:
        return self.table(table).search().where(where).select([H3_COLUMN]).limit(1).to_arrow().num_rows > 0

    def build_indexes(self, table: str = "cells", *, min_rows: int = INDEX_MIN_ROWS) -> list[str]:
        """Build an ANN index on every vector column of a table with at least ``min_rows`` rows.

        A column that already has an index gets its new rows folded in (``optimize``) instead. Until a
        table reaches ``min_rows`` rows search stays exact, which is both correct and fast at that size.

        Returns:
            The vector columns whose index was built or refreshed.
        """
        target = self.table(table)
        rows = target.count_rows()
        if rows < min_rows:
            return []
        indexed = {column for index in target.list_indices() for column in index.columns}
        missing = [
            column
            for column in VECTOR_COLUMNS.get(table, ())
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
        stale = [
            column
            for column in indexed & set(VECTOR_COLUMNS.get(table, ()))
            if _unindexed_rows(target, column)
        ]
        if stale:
            target.optimize()
        return sorted(missing + stale)

    def info(self) -> dict[str, Any]:
        """A summary: path, size on disk, and per table its rows, models, vector widths and index state."""
        tables = {}
        for name in self.table_names():
            target = self.table(name)
            indexes = {
                index.name: {
                    "columns": list(index.columns),
                    "type": index.index_type,
                    "unindexed_rows": _unindexed_rows(target, index.columns[0]),
                }
                for index in target.list_indices()
            }
            tables[name] = {
                "rows": target.count_rows(),
                "models": self.model_ids(name)
                if MODEL_COLUMN in target.schema.names and name != "models"
                else [],
                "vectors": {
                    field.name: field.type.list_size
                    for field in target.schema
                    if pa.types.is_fixed_size_list(field.type)
                },
                "indexes": indexes,
                "search": "ann"
                if indexes and any(i["type"] != "BTree" for i in indexes.values())
                else "exact",
            }
        filesystem, root = file_system(self.location)
        files = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
        size = sum(f.size for f in files if f.type == pafs.FileType.File)
        return {"path": self.location, "size_bytes": size, "tables": tables, "models": self.models()}

    def ensure_table(self, table: str, schema: pa.Schema) -> pa.Schema:
        """Create ``table`` empty with ``schema`` unless it exists; return its schema.

        Raises:
            GeolinkError: the table exists with other columns or vector widths.
        """
        if table not in self.table_names():
            return self._db.create_table(table, schema=schema, exist_ok=True).schema
        stored = self.table(table).schema
        _conform(table, schema.empty_table(), stored)
        return stored


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` is an object-store URI (``s3://``, ``gs://``, ``az://``...) rather than a local path."""
    scheme, sep, _ = str(location).partition("://")
    return bool(sep) and scheme != "file"


def file_system(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """A pyarrow file system for ``location`` (local or object store) and the path of ``location`` inside it."""
    if is_remote(location):
        return pafs.FileSystem.from_uri(str(location))
    return pafs.LocalFileSystem(), str(Path(location).resolve())


def sql_string(value: str) -> str:
    """``value`` as a quoted SQL string literal (for Lance filters)."""
    return "'" + str(value).replace("'", "''") + "'"


def _unindexed_rows(target: lancedb.table.Table, column: str) -> int:
    for index in target.list_indices():
        if column in index.columns:
            stats = target.index_stats(index.name)
            return int(stats.num_unindexed_rows) if stats is not None else 0
    return target.count_rows()


def _batches(data: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch | pa.Table]) -> Iterator[pa.Table]:
    if isinstance(data, pa.RecordBatch | pa.Table):
        data = [data]
    for part in data:
        yield pa.Table.from_batches([part]) if isinstance(part, pa.RecordBatch) else part


def _conform(table: str, batch: pa.Table, schema: pa.Schema) -> pa.Table:
    """``batch`` with the store's column order and types, or a GeolinkError saying what differs."""
    for field in schema:
        if field.name not in batch.schema.names:
            raise GeolinkError(f"rows for {table!r} lack column {field.name!r} that the store has")
        given = batch.schema.field(field.name).type
        if pa.types.is_fixed_size_list(field.type) and given != field.type:
            width = given.list_size if pa.types.is_fixed_size_list(given) else "variable"
            raise GeolinkError(
                f"{table}.{field.name} vectors have width {field.type.list_size} in the store "
                f"but the new rows have width {width}"
            )
    extra = [name for name in batch.schema.names if name not in schema.names]
    if extra:
        raise GeolinkError(f"rows for {table!r} have columns the store lacks: {', '.join(extra)}")
    try:
        return batch.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise GeolinkError(f"rows for {table!r} do not match the store's schema: {error}") from error


def _check_unique_keys(table: str, batch: pa.Table, keys: list[str]) -> None:
    if batch.group_by(keys).aggregate([]).num_rows != batch.num_rows:
        raise GeolinkError(
            f"rows for {table!r} repeat a key ({', '.join(keys)}); each key may appear once per batch"
        )
