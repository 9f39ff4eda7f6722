"""The LanceDB store: one directory (or object-store prefix) per store, one Lance table per kind of row.

Tables (see :mod:`geolink_store.store.schema` and docs/design.md): ``cells`` (one row per H3 cell and model),
``patches`` (one row per fine H3 cell and model), ``models`` (one row per model), ``heads`` (trained heads)
and ``predictions`` (one row per head and cell), the last two written by ``geolink_store.heads.from_store``.

Every :meth:`Store.upsert` is one LanceDB ``merge_insert`` per batch, keyed on
:data:`~geolink_store.store.schema.TABLE_KEYS`: a batch is one Lance commit that lands whole or not at all,
and re-writing a row replaces it. A killed writer therefore leaves whole batches behind; rerunning it
(optionally skipping :meth:`Store.existing_cells`) ends with exactly the rows of an uninterrupted run. The
second write path, for distributed writers, stages fragments and commits each table once
(:meth:`Store.write_fragments`, :meth:`Store.commit_fragments`, :meth:`Store.journal`). Vector indexes:
:mod:`geolink_store.store.indexes`. Upkeep (:meth:`Store.optimize`), verification (:meth:`Store.check`) and
recovery (:meth:`Store.restore`): :mod:`~geolink_store.store.upkeep`, :mod:`~geolink_store.store.check`,
:mod:`~geolink_store.store.versions`. Every table the store hands out reports a damaged file as a
:class:`~geolink_store.store.damage.DamagedTableError` (:mod:`~geolink_store.store.damage`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geolink_store.constants import CELLS, DEFAULT_EPOCH, EPOCH_COLUMN, H3_COLUMN, MODEL_COLUMN, MODELS
from geolink_store.errors import InputError, StoreError
from geolink_store.store._filters import model_filter
from geolink_store.store._staging import StagingJournal, commit_fragments, write_fragments
from geolink_store.store._writes import Rows, batches, conform, merge, prepared
from geolink_store.store.check import Problem, check_table
from geolink_store.store.damage import GuardedTable, guard
from geolink_store.store.epochs import add_later_columns, chosen_epoch, epoch_filter, stored_epochs
from geolink_store.store.indexes import INDEX_MIN_ROWS, REFRESH_SHARE, build_indexes, index_state
from geolink_store.store.locations import file_system, is_remote, size_bytes
from geolink_store.store.quantize import codes_column, layout_of
from geolink_store.store.schema import (
    CELL_KEY,
    DECLARED_SCHEMAS,
    LATER_COLUMNS,
    MODELS_SCHEMA,
    TABLE_KEYS,
    VECTOR_COLUMNS,
)
from geolink_store.store.upkeep import Retention, optimize_table
from geolink_store.store.versions import restore


@dataclass(frozen=True)
class UpsertResult:
    """Counts from one :meth:`Store.upsert`: rows inserted, rows replaced, Lance commits made."""

    inserted: int
    updated: int
    commits: int


class Store:
    """A geolink store: a LanceDB database holding the ``cells``, ``patches``, ``models``... tables.

    The store is a local directory or an object-store URI (``s3://bucket/prefix``, ``gs://``, ``az://``); for
    the latter, credentials and endpoint come from the environment as LanceDB reads them
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT``...). A Store pickles
    as its location, so that workers of a cluster reopen it.
    """

    def __init__(self, location: str | Path, db: lancedb.DBConnection) -> None:
        """Wrap an open connection; use :meth:`open` or :meth:`create_or_open` instead."""
        self.location = str(location)
        self._db = db

    def __reduce__(self) -> tuple[Callable[[str], Store], tuple[str]]:
        return _reopen, (self.uri,)

    @property
    def remote(self) -> bool:
        """Whether the store lives on object storage."""
        return is_remote(self.location)

    @property
    def path(self) -> Path:
        """The local directory of the store.

        Raises:
            InputError: the store is on object storage.
        """
        if self.remote:
            raise InputError(
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
        """Open the store at ``location``, creating an empty one if nothing is there.

        Raises:
            InputError: ``location`` is a file.
        """
        if not is_remote(location):
            path = Path(location)
            if path.exists() and not path.is_dir():
                raise InputError(f"store path {path} is a file; a store is a directory")
            path.mkdir(parents=True, exist_ok=True)
        return cls(location, lancedb.connect(location))

    @classmethod
    def open(cls, location: str | Path) -> Store:
        """Open an existing store.

        Raises:
            StoreError: nothing is at ``location`` (no directory, or no tables under the URI).
        """
        if not is_remote(location) and not Path(location).is_dir():
            raise _missing(location)
        store = cls(location, lancedb.connect(location))
        if store.remote and not store.table_names():
            raise _missing(location)
        return store

    def table_names(self) -> list[str]:
        """The tables in the store, sorted."""
        return sorted(self._db.list_tables().tables)

    def table(self, name: str) -> lancedb.table.Table:
        """An open LanceDB table, whose damaged files are reported as such (a :class:`GuardedTable`).

        Raises:
            StoreError: the store has no such table.
            DamagedTableError: its newest manifest cannot be read (later calls raise it for other damage).
        """
        self._require(name)
        return self._open(name)

    def _require(self, name: str) -> None:
        names = self.table_names()
        if name not in names:
            raise StoreError(
                f"store {self.location} has no table {name!r} (tables: {', '.join(names) or 'none'})"
            )

    def _open(self, name: str) -> lancedb.table.Table:
        with guard(name, self.location):
            opened = self._db.open_table(name)
        return cast("lancedb.table.Table", GuardedTable(opened, name, self.location))

    def register_model(
        self,
        model_id: str,
        *,
        name: str,
        architecture: str,
        config: dict[str, Any],
        text_encoder: str,
    ) -> str:
        """Record a model once; recording it again changes nothing.

        Args:
            model_id: ``model.fingerprint``, a hash of config and weights.
            name: a name for people (the checkpoint's file name).
            architecture: the image backbone.
            config: the model config, stored as JSON.
            text_encoder: the tag text encoder the model reads.
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
        self.upsert(MODELS, pa.Table.from_pydict(row, schema=MODELS_SCHEMA))
        return model_id

    def models(self) -> list[dict[str, Any]]:
        """The registered models as dicts (``config`` parsed from JSON)."""
        if MODELS not in self.table_names():
            return []
        rows = self.table(MODELS).to_arrow().to_pylist()
        return [{**row, "config": json.loads(row["config"])} for row in rows]

    def upsert(self, table: str, data: Rows, *, index: bool = True) -> UpsertResult:
        """Insert or replace rows keyed on :data:`~geolink_store.store.schema.TABLE_KEYS`.

        Each batch is one atomic Lance commit (``merge_insert``), so rerunning an interrupted write never
        duplicates a row. A missing table is created holding the first batch, in that batch's one commit
        (so a failed first write leaves no table), with its declared schema
        (:data:`~geolink_store.store.schema.DECLARED_SCHEMAS`) or else the first batch's.

        Args:
            table: ``cells``, ``patches``, ``models``, ``heads`` or ``predictions``.
            data: a pyarrow Table, a RecordBatch, or an iterable of them (streamed batch by batch).
            index: build or refresh the vector indexes afterwards if the table has reached
                :data:`~geolink_store.store.indexes.INDEX_MIN_ROWS` rows (see :meth:`build_indexes`).

        Raises:
            InputError: unknown table, or batches whose columns or vector widths differ from the store's.
        """
        if table not in TABLE_KEYS:
            raise InputError(f"unknown table {table!r}; the store writes {', '.join(TABLE_KEYS)}")
        inserted = updated = commits = 0
        target = self._open(table) if table in self.table_names() else None
        if target is not None and add_later_columns(target, table):
            target = self._open(table)
        for batch in batches(data):
            created = target is None and self._create(table, batch)
            if target is None:
                target = self._open(table)
            added, replaced = (batch.num_rows, 0) if created else merge(target, table, batch)
            inserted += added
            updated += replaced
            commits += 1
        if index and target is not None and table in VECTOR_COLUMNS:
            build_indexes(target, table, INDEX_MIN_ROWS, refresh_share=REFRESH_SHARE)
        return UpsertResult(inserted=inserted, updated=updated, commits=commits)

    def _create(self, table: str, batch: pa.Table) -> bool:
        """Create ``table`` holding ``batch``, in one commit; False when another writer created it first.

        A create that fails leaves no table: the data files Lance wrote before its commit are removed.
        """
        schema = DECLARED_SCHEMAS.get(table, batch.schema)
        rows = prepared(table, batch, schema)
        try:
            self._db.create_table(table, data=rows, schema=schema, on_bad_vectors="null")
        except Exception:
            if self._committed(table):
                return False
            self._db.drop_table(table, ignore_missing=True)
            raise
        return True

    def _committed(self, table: str) -> bool:
        """Whether ``table`` has a committed version (a folder of data files alone has none)."""
        try:
            self._db.open_table(table)
        except ValueError:  # lancedb's "table was not found"
            return False
        return True

    def ensure_table(self, table: str, schema: pa.Schema) -> pa.Schema:
        """Create ``table`` empty with ``schema`` unless it exists; return its schema.

        Raises:
            InputError: the table exists with other columns or vector widths.
        """
        if table not in self.table_names():
            return self._db.create_table(table, schema=schema, exist_ok=True).schema
        add_later_columns(self.table(table), table)
        stored = self.table(table).schema
        conform(table, schema.empty_table(), stored)
        return stored

    def write_fragments(self, table: str, data: pa.Table) -> list[str]:
        """Write rows as uncommitted Lance fragments of an existing ``table`` (any process may, in parallel).

        Returns:
            The fragments' metadata as JSON, for :meth:`commit_fragments`.
        """
        return write_fragments(self.table_uri(table), data, self.table(table).schema)

    def commit_fragments(
        self, table: str, fragments: list[str], *, model_id: str, epoch: str, replace: np.ndarray
    ) -> None:
        """Commit fragments from :meth:`write_fragments` in one transaction, then refresh the indexes.

        The same commit drops the rows of ``model_id`` and ``epoch`` that the new rows replace: those of the
        cells in ``replace`` (``h3`` for ``cells``, ``parent`` for ``patches``). Fragments committed already
        (by a run interrupted after its commit) are not committed again.
        """
        where = self.rows_filter(table, model_id, epoch)
        if commit_fragments(self.table_uri(table), fragments, CELL_KEY[table], replace, where):
            self.build_indexes(table)

    def journal(self, name: str) -> StagingJournal:
        """The staging journal ``name`` of a distributed write, under ``<store>/_staging/``."""
        filesystem, root = file_system(self.location)
        return StagingJournal(filesystem, f"{root.rstrip('/')}/_staging/{name}")

    def existing_cells(self, model_id: str, table: str = CELLS, epoch: str = DEFAULT_EPOCH) -> np.ndarray:
        """The sorted ``int64`` H3 ids stored for ``model_id`` and ``epoch``: what a resumed ingest skips."""
        if table not in self.table_names():
            return np.empty(0, dtype=np.int64)
        where = self.rows_filter(table, model_id, epoch)
        found = self.table(table).search().where(where).select([H3_COLUMN]).limit(None)
        return np.sort(found.to_arrow()[H3_COLUMN].to_numpy())

    def rows_filter(self, table: str, model_id: str, epoch: str) -> str:
        """The filter selecting the rows of one model and epoch in ``table`` (of any store version)."""
        by_epoch = epoch_filter(self.table(table).schema, epoch)
        if by_epoch is None and epoch != DEFAULT_EPOCH:  # a store of before epochs holds only the default
            return "FALSE"
        return " AND ".join(filter(None, [model_filter(model_id), by_epoch]))

    def epochs(self, table: str = CELLS, model_id: str | None = None) -> list[str]:
        """The epochs with rows in ``table`` (of ``model_id``, if given), oldest first."""
        if table not in self.table_names():
            return []
        return stored_epochs(self.table(table), model_filter(model_id) if model_id else None)

    def default_epoch(self, epoch: str | None = None, table: str = CELLS, model_id: str | None = None) -> str:
        """``epoch`` if ``table`` has rows of it (of ``model_id``, if given); if None, the latest epoch.

        Raises:
            StoreError: no such epoch, or the table is empty.
        """
        what = f"table {table!r}" + (f" for model {model_id!r}" if model_id else "")
        return chosen_epoch(self.epochs(table, model_id), epoch, what)

    def vector_width(self, table: str, column: str) -> int:
        """The fixed width of a vector column (stored as float32, or as int8 codes only)."""
        schema = self.table(table).schema
        return schema.field(column if column in schema.names else codes_column(column)).type.list_size

    def resolution(self, model_id: str, table: str = CELLS) -> int:
        """The H3 resolution of the rows of ``model_id`` (one resolution per table and model).

        Raises:
            StoreError: the table holds no rows of ``model_id``.
        """
        found = self.table(table).search().where(model_filter(model_id)).select(["res"]).limit(1).to_arrow()
        if found.num_rows == 0:
            raise StoreError(f"table {table!r} holds no rows for model {model_id!r}")
        return int(found["res"][0].as_py())

    def model_ids(self, table: str = CELLS) -> list[str]:
        """The distinct model ids that have rows in ``table``."""
        ids = self.table(table).search().select([MODEL_COLUMN]).limit(None).to_arrow()[MODEL_COLUMN]
        return sorted(pc.unique(ids).to_pylist())

    def default_model(self, model_id: str | None = None, table: str = CELLS) -> str:
        """``model_id`` if it has rows in ``table``; if None, the table's only model.

        Raises:
            StoreError: the model has no rows, or none was named and the table is empty or holds several
            models.
        """
        if model_id is not None and self._has_rows(table, model_filter(model_id)):
            return model_id
        ids = self.model_ids(table)
        if model_id is not None:
            raise StoreError(
                f"model {model_id!r} has no rows in {table!r} (models: {', '.join(ids) or 'none'})"
            )
        if not ids:
            raise StoreError(f"table {table!r} in {self.location} is empty")
        if len(ids) > 1:
            raise StoreError(f"table {table!r} holds several models ({', '.join(ids)}); pass model_id=...")
        return ids[0]

    def _has_rows(self, table: str, where: str) -> bool:
        return self.table(table).search().where(where).select([H3_COLUMN]).limit(1).to_arrow().num_rows > 0

    def build_indexes(self, table: str = CELLS, *, min_rows: int = INDEX_MIN_ROWS) -> list[str]:
        """Build or refresh the ANN index of every vector column of a table with at least ``min_rows`` rows.

        Returns:
            The vector columns whose index was built or refreshed (see
            :func:`~geolink_store.store.indexes.build_indexes`).
        """
        return build_indexes(self.table(table), table, min_rows)

    def optimize(self, retention: Retention | None = None) -> dict[str, dict[str, Any]]:
        """Merge index segments, compact fragments and prune old versions of every table (ingest ends so).

        Args:
            retention: which old versions to keep (default: those that cost no data; see :class:`Retention`).

        Returns:
            Per table, its versions, fragments, index segments and bytes ``before`` and ``after``.
        """
        retention = retention or Retention()
        done = {}
        for name in self.table_names():
            with guard(name, self.location):
                done[name] = optimize_table(self.table_uri(name), retention)
        return done

    def check(self) -> list[Problem]:
        """Every problem of every table (none: the store is whole); see :mod:`geolink_store.store.check`."""
        return [
            problem
            for name in self.table_names()
            for problem in check_table(self.location, self.table_uri(name), name)
        ]

    def restore(self, table: str, version: int) -> int:
        """Make ``version`` of ``table`` its newest again (a new commit); returns the newest version after.

        Raises:
            StoreError: no such table or version, or that version is unreadable too.
        """
        self._require(table)
        return restore(self.table_uri(table), table, version)

    def info(self) -> dict[str, Any]:
        """A summary: path, size on disk, models, and per table what :meth:`table_info` gives."""
        return {
            "path": self.location,
            "size_bytes": size_bytes(self.location),
            "tables": {name: self.table_info(name) for name in self.table_names()},
            "models": self.models(),
        }

    def table_info(self, name: str) -> dict[str, Any]:
        """A table's rows, models, vector widths and layout, versions, fragments, bytes and indexes.

        ``layout`` (tables with vectors): ``float32``, ``int8`` or ``both`` (see ``schema.vector_fields``).
        """
        target = self.table(name)
        return {
            "rows": target.count_rows(),
            "models": self.model_ids(name) if MODEL_COLUMN in target.schema.names and name != MODELS else [],
            **({"epochs": self.epochs(name)} if EPOCH_COLUMN in LATER_COLUMNS.get(name, {}) else {}),
            "vectors": {
                field.name: field.type.list_size
                for field in target.schema
                if pa.types.is_fixed_size_list(field.type)
            },
            **({"layout": layout_of(target.schema, VECTOR_COLUMNS[name])} if name in VECTOR_COLUMNS else {}),
            "version": target.version,
            "versions": len(target.list_versions()),
            "fragments": target.stats()["fragment_stats"]["num_fragments"],
            "size_bytes": size_bytes(self.table_uri(name)),
            **index_state(target),
        }


def _missing(location: str | Path) -> StoreError:
    return StoreError(
        f"store {location} does not exist: pass location=... of an existing store, or ingest into it first"
    )


def _reopen(location: str) -> Store:
    """A pickled :class:`Store`, reopened (in another process)."""
    return Store(location, lancedb.connect(location))
