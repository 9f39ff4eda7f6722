"""``geolink optimize``: per table, index segments merged, fragments compacted, old versions pruned.

Every batch an ingest writes is one Lance commit: one small fragment and one version. Optimizing folds
unindexed rows into the indexes and merges their segments (Lance compacts only fragments covered alike), then
compacts the fragments, then removes the versions the :class:`Retention` does not keep, with their files.
Files of a transaction still in progress (a Ray ingest's staged fragments) are never removed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from geolink_store.errors import InputError
from geolink_store.store._lance import dataset
from geolink_store.store.indexes import fold_new_rows
from geolink_store.store.locations import size_bytes
from geolink_store.store.versions import data_files

if TYPE_CHECKING:
    from lance import LanceDataset

_PURPOSE = "store upkeep (geolink optimize)"
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Retention:
    """Which versions an optimize keeps besides the newest.

    ``keep_versions``: the N newest; ``older_than``: every version younger than this; neither (the default):
    the newest versions that read only data files the newest one reads too, which therefore cost no data of
    their own (after a compaction, that is the compacted version alone; after later writes, every version
    since the compaction, so each of those writes can be undone with ``geolink restore``).
    """

    keep_versions: int | None = None
    older_than: timedelta | None = None

    def __post_init__(self) -> None:
        if self.keep_versions is not None and self.older_than is not None:
            raise InputError("give keep_versions= or older_than=, not both")
        if self.keep_versions is not None and self.keep_versions < 1:
            raise InputError(f"keep_versions= must be at least 1 (the newest), got {self.keep_versions}")


@dataclass(frozen=True)
class TableState:
    """What upkeep changes in a table: versions, fragments, index segments and bytes on disk."""

    versions: int
    fragments: int
    index_segments: int
    size_bytes: int


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``1d`` or ``2w`` as a timedelta.

    Raises:
        InputError: another form.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise InputError(f"older_than= must be a number and a unit (s, m, h, d, w) such as 1d; got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def table_state(uri: str) -> TableState:
    """The state of the Lance dataset at ``uri``."""
    ds = dataset(uri, _PURPOSE)
    return TableState(
        versions=len(ds.versions()),
        fragments=len(ds.get_fragments()),
        index_segments=sum(len(index.segments) for index in ds.describe_indices()),
        size_bytes=size_bytes(uri),
    )


def optimize_table(uri: str, retention: Retention) -> dict[str, Any]:
    """Optimize the Lance dataset at ``uri``; returns its :class:`TableState` ``before`` and ``after``."""
    before = table_state(uri)
    fold_new_rows(dataset(uri, _PURPOSE))
    dataset(uri, _PURPOSE).optimize.compact_files()
    ds = dataset(uri, _PURPOSE)
    ds.cleanup_old_versions(
        **_cleanup_arguments(ds, retention), delete_unverified=False, error_if_tagged_old_versions=False
    )
    return {"before": asdict(before), "after": asdict(table_state(uri))}


def _cleanup_arguments(ds: LanceDataset, retention: Retention) -> dict[str, Any]:
    if retention.older_than is not None:
        return {"older_than": retention.older_than}
    keep = retention.keep_versions or _sharing_versions(ds)
    return {"older_than": timedelta(0), "retain_versions": keep}


def _sharing_versions(ds: LanceDataset) -> int:
    """How many of the newest versions read only data files that the newest one reads too."""
    newest = _data_only(ds)
    count = 1
    for version in sorted((v["version"] for v in ds.versions()), reverse=True)[1:]:
        if not _data_only(dataset(ds.uri, _PURPOSE, version)) <= newest:
            break
        count += 1
    return count


def _data_only(ds: LanceDataset) -> set[str]:
    """The data files of a version, without its (small) deletion files."""
    return {path for path in data_files(ds) if path.startswith("data/")}
