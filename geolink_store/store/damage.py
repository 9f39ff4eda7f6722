"""Damaged tables named as such: Lance's errors for missing, truncated or corrupt files become one StoreError.

Lance reports damage as a ``RuntimeError`` (through LanceDB), an ``OSError``, ``ValueError`` or
``pyarrow.ArrowInvalid`` (through pylance), or a Rust panic, with messages such as
``Not found: .../data/x.lance`` (a deleted file), ``failed to fill whole buffer``, ``file size is too small``
(a truncated one), ``corrupt``, ``Protobuf`` or ``invalid magic`` (garbled bytes); see
``tests/store/test_damaged.py``. :class:`GuardedTable` wraps a LanceDB table so that every call on it, and on
the query and merge builders it returns, raises :class:`DamagedTableError` instead. Permission, disk-full and
network errors carry none of these signs and pass through unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from lancedb.merge import LanceMergeInsertBuilder
from lancedb.query import LanceQueryBuilder

from geolink_store.errors import StoreError

DAMAGE_SIGNS = (
    "failed to fill whole buffer",
    "file size is too small",
    "Invalid range",
    "corrupt",
    "Protobuf",
    "does not appear to be a Lance file",
    "LanceError(Arrow)",
    "panicked",
)
"""Fragments of the messages Lance gives for a truncated or garbled file (besides a missing one)."""
_LANCE_ERRORS = (RuntimeError, OSError, ValueError, pa.ArrowException)
_BUILDERS = (LanceQueryBuilder, LanceMergeInsertBuilder)


class DamagedTableError(StoreError):
    """A table whose files are missing, truncated or unreadable."""

    def __init__(self, table: str, location: str) -> None:
        super().__init__(f"table {table} of store {location} is damaged: run geolink check --db {location}")
        self.table = table


def is_damage(error: BaseException, table: str) -> bool:
    """Whether ``error``, raised by Lance reading ``table``, says that one of the table's files is damaged."""
    if not isinstance(error, _LANCE_ERRORS) and "Panic" not in type(error).__name__:
        return False
    return tells_of_damage(str(error), table)


def tells_of_damage(message: str, table: str) -> bool:
    """Whether Lance's message (via pylance or DuckDB's lance extension) tells of damage to ``table``."""
    missing = f"{table}.lance/" in message and "Not found" in message
    return missing or any(sign in message for sign in DAMAGE_SIGNS)


@contextmanager
def guard(table: str, location: str) -> Iterator[None]:
    """Turn a damage error raised inside the block into :class:`DamagedTableError`."""
    try:
        yield
    except BaseException as error:
        if is_damage(error, table):
            raise DamagedTableError(table, location) from error
        raise


class GuardedTable:
    """A LanceDB table (or a query or merge builder of one) whose every call is :func:`guard`-ed.

    Attributes and methods are those of the wrapped object; builders it returns are wrapped in turn, so the
    damage surfaces as :class:`DamagedTableError` wherever the query finally runs (``to_arrow``,
    ``count_rows``, ``execute``...).
    """

    def __init__(self, target: Any, table: str, location: str) -> None:  # noqa: ANN401 (any LanceDB object)
        self._target = target
        self._table = table
        self._location = location

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 (whatever the wrapped attribute is)
        with guard(self._table, self._location):
            value = getattr(self._target, name)
        if not callable(value):
            return value
        return self._guarded(value)

    def _guarded(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            with guard(self._table, self._location):
                result = method(*args, **kwargs)
            if isinstance(result, _BUILDERS):
                return GuardedTable(result, self._table, self._location)
            return result

        return call

    def __repr__(self) -> str:
        return f"GuardedTable({self._target!r})"
