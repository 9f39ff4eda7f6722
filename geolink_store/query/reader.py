"""Read-only access to one table of a store through pylance, for queries that must start fast.

:class:`~geolink_store.store.Store` opens tables through LanceDB, whose import alone takes 1-1.5 s (its
generated REST client); pylance reads the same datasets in a third of that. A :class:`TableReader` answers
what a search needs (filtered rows, counts, the indexed columns, the nearest rows, the default model, its
resolution and epochs) and reports a damaged file as
:class:`~geolink_store.store.damage.DamagedTableError`, as the store's own tables do. What depends only
on the table's version (its models, their resolutions and epochs) is computed once per version and process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geolink_store._optional import import_optional
from geolink_store.constants import DEFAULT_EPOCH, EPOCH_COLUMN, MODEL_COLUMN
from geolink_store.errors import StoreError
from geolink_store.query.int8_scan import nearest_codes
from geolink_store.store._filters import model_filter
from geolink_store.store.epochs import chosen_epoch, epoch_filter, sort_key
from geolink_store.store.locations import is_remote
from geolink_store.store.quantize import codes_column

if TYPE_CHECKING:
    from lance import LanceDataset

    from geolink_store.store import Store

_LANCE_ERRORS = (RuntimeError, OSError, ValueError, pa.ArrowException)


def store_location(store: Store | str | os.PathLike) -> str:
    """The location of an open store or of a store path/URI, as an absolute path or a URI.

    Raises:
        StoreError: a local path that is not a directory.
    """
    location = store.location if hasattr(store, "location") else os.fspath(store)
    if is_remote(location):
        return location.rstrip("/")
    if not Path(location).is_dir():
        raise StoreError(
            f"store {location} does not exist: pass location=... of an existing store, "
            "or ingest into it first"
        )
    return str(Path(location).resolve())


@contextmanager
def _reading(table: str, location: str) -> Iterator[None]:
    """Raise DamagedTableError for a damaged file (the damage module, and LanceDB, load only then)."""
    try:
        yield
    except _LANCE_ERRORS as error:
        from geolink_store.store.damage import DamagedTableError, is_damage

        if is_damage(error, table):
            raise DamagedTableError(table, location) from error
        raise


class TableReader:
    """One table of a store, opened read-only at its latest version."""

    def __init__(self, store: Store | str | os.PathLike, table: str) -> None:
        """Open ``table`` of ``store`` (an open Store, or its path or URI).

        Raises:
            StoreError: no such store or table.
            DamagedTableError: the table's newest manifest cannot be read.
        """
        self.location = store_location(store)
        self.name = table
        uri = f"{self.location}/{table}.lance"
        if not is_remote(uri) and not Path(uri).is_dir():
            raise StoreError(f"store {self.location} has no table {table!r}")
        lance = import_optional("lance", "reading the store")
        with _reading(self.name, self.location):
            try:
                self.dataset: LanceDataset = lance.dataset(uri)
            except ValueError as error:  # pylance's "Dataset at path ... was not found"
                if "not found" not in str(error).lower() or f"{table}.lance/" in str(error):
                    raise
                raise StoreError(f"store {self.location} has no table {table!r}") from error

    @property
    def version(self) -> int:
        """The table version read."""
        return self.dataset.version

    @property
    def schema(self) -> pa.Schema:
        """The table's columns."""
        return self.dataset.schema

    def rows(self, where: str | None, columns: Sequence[str], limit: int | None = None) -> pa.Table:
        """The rows matching ``where`` (all for None), with ``columns`` only."""
        with _reading(self.name, self.location):
            return self.dataset.to_table(columns=list(columns), filter=where, limit=limit)

    def count(self, where: str | None = None) -> int:
        """The number of rows matching ``where``."""
        with _reading(self.name, self.location):
            return self.dataset.count_rows(filter=where)

    def indexed_columns(self) -> set[str]:
        """The columns that carry an index (vector or scalar)."""
        with _reading(self.name, self.location):
            return {name for index in self.dataset.describe_indices() for name in index.field_names}

    def nearest(
        self,
        query: np.ndarray,
        column: str,
        where: str | None,
        k: int,
        columns: Sequence[str],
        *,
        metric: str,
        exact: bool,
        nprobes: int,
        refine_factor: int,
        ef: int,
    ) -> pa.Table:
        """The ``k`` rows nearest ``query`` in ``column`` (with ``_distance``), ``where`` applied first.

        Exact (a flat scan of the filtered rows) or through the column's ANN index with the given parameters.
        A vector stored as int8 codes only is searched exactly by its codes
        (:func:`~geolink_store.query.int8_scan.nearest_codes`).
        """
        if column not in self.schema.names and codes_column(column) in self.schema.names:
            with _reading(self.name, self.location):
                return nearest_codes(self.dataset, query, column, where, k, columns)
        nearest: dict[str, Any] = {"column": column, "q": query.astype(np.float32), "k": k, "metric": metric}
        if exact:
            nearest["use_index"] = False
        else:
            # both bounds, as LanceDB's nprobes() sets them: pylance's nprobes alone is only the minimum
            nearest |= {"minimum_nprobes": nprobes, "maximum_nprobes": nprobes}
            nearest |= {"refine_factor": refine_factor, "ef": ef}
        with _reading(self.name, self.location):
            return self.dataset.to_table(
                columns=[*columns, "_distance"], filter=where, nearest=nearest, prefilter=True
            )

    def model_ids(self) -> list[str]:
        """The distinct model ids that have rows in the table (computed once per table version)."""
        return sorted(_models(self))

    def default_model(self, model_id: str | None = None) -> str:
        """``model_id`` if it has rows in the table; if None, the table's only model.

        Raises:
            StoreError: the model has no rows, or none was named and the table is empty or holds several.
        """
        ids = self.model_ids()
        if model_id is not None and model_id in ids:
            return model_id
        if model_id is not None:
            raise StoreError(
                f"model {model_id!r} has no rows in {self.name!r} (models: {', '.join(ids) or 'none'})"
            )
        if not ids:
            raise StoreError(f"table {self.name!r} in {self.location} is empty")
        if len(ids) > 1:
            raise StoreError(
                f"table {self.name!r} holds several models ({', '.join(ids)}); pass model_id=..."
            )
        return ids[0]

    def resolution(self, model_id: str) -> int:
        """The H3 resolution of the rows of ``model_id``.

        Raises:
            StoreError: the table holds no rows of ``model_id``.
        """
        return self._model(model_id).res

    def default_epoch(self, model_id: str, epoch: str | None = None) -> str:
        """``epoch`` if ``model_id`` has rows of it; if None, its latest epoch.

        Raises:
            StoreError: no rows of ``model_id``, or none of ``epoch``.
        """
        epochs = list(self._model(model_id).epochs)
        return chosen_epoch(epochs, epoch, f"table {self.name!r} for model {model_id!r}")

    def rows_filter(self, model_id: str, epoch: str) -> str | None:
        """The filter selecting the rows of one model and epoch; None when the table holds no other rows.

        Leaving out a filter that every row passes matters: a prefiltered vector search costs about twice an
        unfiltered one (14 vs 6.4 ms on 60k indexed rows).
        """
        models = _models(self)
        parts = [
            model_filter(model_id) if len(models) > 1 else None,
            epoch_filter(self.schema, epoch) if len(self._model(model_id).epochs) > 1 else None,
        ]
        return all_of(*parts)

    def _model(self, model_id: str) -> _ModelRows:
        found = _models(self).get(model_id)
        if found is None:
            raise StoreError(f"table {self.name!r} holds no rows for model {model_id!r}")
        return found


def all_of(*filters: str | None) -> str | None:
    """The conjunction of the given filters (None ones left out); None when none is given."""
    given = [f"({part})" for part in filters if part]
    return " AND ".join(given) or None


@dataclass(frozen=True)
class _ModelRows:
    """What one model's rows in a table share: their H3 resolution, and their epochs (oldest first)."""

    res: int
    epochs: tuple[str, ...]


_MODELS: dict[tuple[str, str, int], dict[str, _ModelRows]] = {}
"""Per table version read in this process: each model's :class:`_ModelRows`."""


def _models(reader: TableReader) -> dict[str, _ModelRows]:
    key = (reader.location, reader.name, reader.version)
    if key not in _MODELS:
        has_epochs = EPOCH_COLUMN in reader.schema.names
        columns = [MODEL_COLUMN, "res", *([EPOCH_COLUMN] if has_epochs else [])]
        keys = reader.rows(None, columns).group_by(columns).aggregate([])
        found: dict[str, _ModelRows] = {}
        for model_id in sorted(set(keys[MODEL_COLUMN].to_pylist())):
            rows = keys.filter(pc.equal(keys[MODEL_COLUMN], model_id))
            epochs = set(rows[EPOCH_COLUMN].to_pylist()) if has_epochs else {DEFAULT_EPOCH}
            found[model_id] = _ModelRows(int(rows["res"][0].as_py()), tuple(sorted(epochs, key=sort_key)))
        if len(_MODELS) >= 64:
            _MODELS.clear()
        _MODELS[key] = found
    return _MODELS[key]
