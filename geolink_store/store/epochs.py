"""Epochs: labelled snapshots of the same H3 cells (``2010``, ``2020-06``...), one ``epoch`` value per row.

Stores written before epochs existed have no ``epoch`` column: every reader takes their rows as the
:data:`~geolink_store.constants.DEFAULT_EPOCH`, and the first write to such a table adds the column (and the
other :data:`~geolink_store.store.schema.LATER_COLUMNS`) in one commit, the old rows taking the default value.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from geolink_store.constants import DEFAULT_EPOCH, EPOCH_COLUMN
from geolink_store.errors import InputError, StoreError
from geolink_store.store._filters import quote
from geolink_store.store.schema import LATER_COLUMNS

if TYPE_CHECKING:
    import lancedb  # only annotations: readers of epochs (geolink search) start without LanceDB

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def checked_label(label: str) -> str:
    """``label`` if it can name an epoch: 1-64 letters, digits, ``.``, ``_`` or ``-``, starting alphanumeric.

    Raises:
        InputError: it cannot.
    """
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise InputError(
            f"epoch={label!r} is not an epoch label: use 1-64 letters, digits, '.', '_' or '-' "
            "(e.g. 2020, 2020-06, 2024-growing-season)"
        )
    return label


def sort_key(label: str) -> tuple[bool, str]:
    """Epochs in time order: the default (unlabelled) epoch first, then labels as text (ISO dates sort)."""
    return label != DEFAULT_EPOCH, label


def stored_epochs(table: lancedb.table.Table, where: str | None = None) -> list[str]:
    """The epochs that have rows in ``table`` (matching ``where``), oldest first."""
    if EPOCH_COLUMN not in table.schema.names:
        query = table.search().select([]).limit(1)
        found = (query.where(where) if where else query).to_arrow().num_rows
        return [DEFAULT_EPOCH] if found else []
    query = table.search().select([EPOCH_COLUMN]).limit(None)
    values = (query.where(where) if where else query).to_arrow()[EPOCH_COLUMN]
    return sorted(pc.unique(values).to_pylist(), key=sort_key)


def chosen_epoch(epochs: list[str], epoch: str | None, what: str) -> str:
    """``epoch`` if it is one of ``epochs``; if None, the latest of them.

    Raises:
        StoreError: no such epoch, or ``epochs`` is empty.
    """
    if not epochs:
        raise StoreError(f"{what} holds no rows")
    if epoch is None:
        return max(epochs, key=sort_key)
    if epoch not in epochs:
        raise StoreError(f"{what} has no epoch {epoch!r} (epochs: {', '.join(epochs)})")
    return epoch


def epoch_filter(schema: pa.Schema, epoch: str) -> str | None:
    """The filter selecting the rows of ``epoch``; None for a table of before epochs (its rows are one)."""
    if EPOCH_COLUMN in schema.names:
        return f"{EPOCH_COLUMN} = {quote(epoch)}"
    return None


def add_later_columns(table: lancedb.table.Table, name: str) -> bool:
    """Give a table of an older store the columns added since, in one commit; False when it has them all."""
    missing = {
        column: value
        for column, value in LATER_COLUMNS.get(name, {}).items()
        if column not in table.schema.names
    }
    if not missing:
        return False
    table.add_columns(missing)
    return True
