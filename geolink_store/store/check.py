"""``geolink check``: every table verified, each problem named with the way to recover from it.

A table is whole when its newest manifest reads, every data and deletion file it names is present (data files
at the size the manifest records), every row reads, every index segment is present at its recorded size and
loads, no key of ``cells`` or ``patches`` repeats, and its columns are those geolink writes. The recovery is
the newest older version that is whole (restored with ``geolink restore``), else rebuilding the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geolink_store.constants import CELLS, H3_COLUMN, HEADS, MODEL_COLUMN, MODELS, PATCHES, PREDICTIONS
from geolink_store.store.damage import is_damage
from geolink_store.store.schema import TABLE_KEYS, expected_schema
from geolink_store.store.versions import data_files, manifests, open_version, table_files

if TYPE_CHECKING:
    from lance import LanceDataset
    from lance.indices import IndexSegmentDescription

SCAN_BATCH_ROWS = 4096
REBUILD = {
    CELLS: "re-run the ingest (it encodes the cells the table lacks)",
    PATCHES: "re-run the ingest with --overwrite (patches come with their cells)",
    MODELS: "re-run the ingest (it records its model)",
    HEADS: "train the heads again",
    PREDICTIONS: "run geolink heads predict again",
}
"""How to rebuild each table once its damaged folder is moved aside."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one version (the newest) of one table, and how to recover."""

    table: str
    version: int | None
    what: str
    recovery: str

    def __str__(self) -> str:
        version = f" version {self.version}" if self.version is not None else ""
        return f"table {self.table}{version}: {self.what}; {self.recovery}"


def check_table(location: str, uri: str, table: str) -> list[Problem]:
    """The problems of the table ``table`` (Lance dataset ``uri``) of the store at ``location``."""
    versions = manifests(uri)
    newest = max(versions, default=None)
    if newest is None:
        return [Problem(table, None, "has no manifest (_versions/ is empty)", _rebuild(uri, table))]
    files = table_files(uri)
    ds = open_version(uri, table)
    unreadable: dict[str, str] = {}
    if ds is None or ds.version != newest:
        found = [f"its manifest _versions/{versions[newest].rsplit('/', 1)[-1]} is unreadable"]
    else:
        found = _missing_files(ds, files)
        if not found:
            unreadable = _unreadable(ds, table)
            found = [f"data file {path} cannot be read: {error}" for path, error in unreadable.items()]
        if not found:
            found = [
                *_index_problems(ds, files, table),
                *_duplicate_keys(ds, table),
                *_schema_problems(ds, table),
            ]
    if not found:
        return []
    recovery = _recovery(location, uri, table, newest, files, set(unreadable))
    return [Problem(table, newest, what, recovery) for what in found]


def _missing_files(ds: LanceDataset, files: dict[str, int]) -> list[str]:
    """The data and deletion files of this version that are absent or of another size than recorded."""
    problems = [f"file {path} is missing" for path in sorted(data_files(ds)) if path not in files]
    for fragment in ds.get_fragments():
        for data in fragment.data_files():
            size = files.get(f"data/{data.path}")
            if size is not None and data.file_size_bytes and size != data.file_size_bytes:
                problems.append(
                    f"data file data/{data.path} is {size} bytes, the manifest records {data.file_size_bytes}"
                )
    return problems


def _unreadable(ds: LanceDataset, table: str) -> dict[str, str]:
    """The data files whose rows cannot all be read (garbled bytes that keep the size), to Lance's message."""
    unreadable = {}
    for fragment in ds.get_fragments():
        try:
            for _ in fragment.to_batches(batch_size=SCAN_BATCH_ROWS):
                pass
        except Exception as error:
            if not is_damage(error, table):
                raise
            unreadable.update((f"data/{data.path}", _first_line(error)) for data in fragment.data_files())
    return unreadable


def _index_problems(ds: LanceDataset, files: dict[str, int], table: str) -> list[str]:
    """Index segments absent or of another size than recorded, and vector indexes that do not answer."""
    problems = []
    for index in ds.describe_indices():
        segments = [_segment_problem(index.name, segment, files) for segment in index.segments]
        problems += [problem for problem in segments if problem]
        column = ds.schema.field(index.field_names[0])
        if any(segments) or not pa.types.is_fixed_size_list(column.type):
            continue
        try:
            probe = np.ones(column.type.list_size, dtype=np.float32)
            ds.to_table(nearest={"column": column.name, "q": probe, "k": 1}, columns=[H3_COLUMN])
        except Exception as error:
            if not is_damage(error, table):
                raise
            problems.append(f"index {index.name} does not answer: {_first_line(error)}")
    return problems


def _segment_problem(name: str, segment: IndexSegmentDescription, files: dict[str, int]) -> str | None:
    folder = f"_indices/{segment.uuid}/"
    size = sum(s for path, s in files.items() if path.startswith(folder))
    if not size:
        return f"index {name}: segment {folder} is missing"
    if segment.size_bytes and size != segment.size_bytes:
        return f"index {name}: segment {folder} is {size} bytes, the manifest records {segment.size_bytes}"
    return None


def _duplicate_keys(ds: LanceDataset, table: str) -> list[str]:
    if table not in (CELLS, PATCHES):
        return []
    keys = [key for key in TABLE_KEYS[table] if key in ds.schema.names]  # a store of before epochs: no epoch
    counts = ds.to_table(columns=keys).group_by(keys).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts["count_all"], 1))
    if not repeated.num_rows:
        return []
    first = repeated.slice(0, 1).to_pylist()[0]
    return [
        f"{repeated.num_rows} keys ({', '.join(keys)}) are stored more than once, e.g. h3 "
        f"{first[H3_COLUMN]:x} of model {first[MODEL_COLUMN]} ({first['count_all']} rows)"
    ]


def _schema_problems(ds: LanceDataset, table: str) -> list[str]:
    expected = expected_schema(table, ds.schema)
    if expected is None or ds.schema.equals(expected, check_metadata=False):
        return []
    return [f"columns differ from geolink's {table} schema: {_schema_difference(ds.schema, expected)}"]


def _schema_difference(stored: pa.Schema, expected: pa.Schema) -> str:
    missing = [name for name in expected.names if name not in stored.names]
    extra = [name for name in stored.names if name not in expected.names]
    changed = [
        f"{field.name} is {stored.field(field.name).type}"
        + ("" if stored.field(field.name).nullable == field.nullable else " (nullability)")
        + f", expected {field.type}"
        for field in expected
        if field.name in stored.names and not stored.field(field.name).equals(field)
    ]
    parts = [
        *([f"missing {', '.join(missing)}"] if missing else []),
        *([f"extra {', '.join(extra)}"] if extra else []),
        *changed,
    ]
    return "; ".join(parts) or "column order"


def _recovery(
    location: str, uri: str, table: str, newest: int, files: dict[str, int], unreadable: set[str]
) -> str:
    whole = _newest_whole_version(uri, table, newest, files, unreadable)
    if whole is None:
        return _rebuild(uri, table)
    then = f", then {REBUILD[table]}" if table in REBUILD else ""
    return f"restore version {whole}: geolink restore --db {location} --table {table} --version {whole}{then}"


def _newest_whole_version(
    uri: str, table: str, newest: int, files: dict[str, int], unreadable: set[str]
) -> int | None:
    """The newest version older than ``newest`` with all its files present and readable and no repeated key.

    Readable means: none of ``unreadable``; the rest of its rows are not read (that would read every version),
    ``geolink check`` after the restore does.
    """
    checks: tuple[Callable[[LanceDataset], object], ...] = (
        lambda ds: _missing_files(ds, files),
        lambda ds: data_files(ds) & unreadable,
        lambda ds: _index_problems(ds, files, table),
        lambda ds: _duplicate_keys(ds, table),
        lambda ds: _schema_problems(ds, table),
    )
    for version in sorted((v for v in manifests(uri) if v < newest), reverse=True):
        ds = open_version(uri, table, version)
        try:
            if ds is not None and not any(check(ds) for check in checks):
                return version
        except Exception as error:
            if not is_damage(error, table):
                raise
    return None


def _rebuild(uri: str, table: str) -> str:
    return f"no earlier version is whole: move {uri} aside, then {REBUILD.get(table, f'recreate {table}')}"


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0].split(", /")[0] if str(error) else type(error).__name__
