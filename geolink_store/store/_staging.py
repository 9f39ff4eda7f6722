"""Staged writes: rows as uncommitted Lance fragments, a journal of finished work, one commit per table.

Workers write fragments next to a table and hand back their metadata (JSON); the driver records each finished
unit of work in a :class:`StagingJournal` and finally commits all of a table's fragments in one Lance
transaction that also deletes the rows they replace. Until that commit readers see none of the new rows.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from geolink_store.store._lance import lance_module

if TYPE_CHECKING:
    from lance import LanceDataset
    from lance.fragment import FragmentMetadata

_PURPOSE = "staged writes (the Ray engine)"


def write_fragments(uri: str, data: pa.Table, schema: pa.Schema) -> list[str]:
    """Write ``data`` (cast to ``schema``) as uncommitted fragments of the Lance dataset at ``uri``.

    Returns:
        Each fragment's metadata as JSON, for :func:`commit_fragments`.
    """
    rows = data.select(schema.names).cast(schema)
    written = lance_module(_PURPOSE).fragment.write_fragments(rows, uri, schema=schema)
    return [json.dumps(fragment.to_json()) for fragment in written]


def commit_fragments(uri: str, fragments_json: list[str], key: str, cells: np.ndarray, where: str) -> bool:
    """Commit staged fragments in one transaction that also drops the rows they replace.

    The rows dropped are those matching ``where`` (one model and epoch) whose ``key`` column is one of
    ``cells``.

    Returns:
        Whether a commit was made: False when there is nothing to commit, or when these fragments were
        committed already (by a run interrupted after its commit).
    """
    if not fragments_json:
        return False
    lance = lance_module(_PURPOSE)
    fragments = [lance.fragment.FragmentMetadata.from_json(f) for f in fragments_json]
    dataset = lance.dataset(uri)
    committed = {data.path for fragment in dataset.get_fragments() for data in fragment.data_files()}
    if fragments[0].data_files()[0].path in committed:
        return False
    removed, updated = _drop_rows(dataset, key, cells, where)
    operation = lance.LanceOperation.Update(
        removed_fragment_ids=removed, updated_fragments=updated, new_fragments=fragments
    )
    lance.LanceDataset.commit(uri, operation, read_version=dataset.version)
    return True


def _drop_rows(
    dataset: LanceDataset, key: str, cells: np.ndarray, where: str
) -> tuple[list[int], list[FragmentMetadata]]:
    """Uncommitted deletions of the rows matching ``where`` whose ``key`` is one of ``cells``.

    Returns:
        The ids of the fragments left empty and the fragments with new deletion files.
    """
    removed, updated = [], []
    wanted = pa.array(cells, type=pa.int64())
    for fragment in dataset.get_fragments():
        rows = fragment.to_table(columns=[key], filter=where)
        matches = pc.unique(rows[key].filter(pc.is_in(rows[key], value_set=wanted))).to_pylist()
        if not matches:
            continue
        remaining = fragment.delete(f"({where}) AND {key} IN ({', '.join(map(str, matches))})")
        if remaining is None:
            removed.append(fragment.fragment_id)
        else:
            updated.append(remaining)
    return removed, updated


class StagingJournal:
    """Finished units of work of one run, one JSON file each (``<key in hex>.json``) in one directory.

    Each file is written whole before it gets its final name, so a kill leaves either a complete record or
    none.
    """

    def __init__(self, filesystem: pafs.FileSystem, directory: str) -> None:
        self.fs = filesystem
        self.directory = directory

    def finished(self) -> dict[int, dict[str, Any]]:
        """The records so far, by key."""
        selector = pafs.FileSelector(self.directory, allow_not_found=True)
        records = {}
        for info in self.fs.get_file_info(selector):
            if info.path.endswith(".json"):
                with self.fs.open_input_stream(info.path) as stream:
                    records[int(info.base_name.removesuffix(".json"), 16)] = json.loads(stream.read())
        return records

    def record(self, key: int, record: dict[str, Any]) -> None:
        """Add a finished unit of work."""
        self.fs.create_dir(self.directory, recursive=True)
        final = f"{self.directory}/{key:x}.json"
        with self.fs.open_output_stream(final + ".tmp") as stream:
            stream.write(json.dumps(record).encode())
        self.fs.move(final + ".tmp", final)

    def clear(self) -> None:
        """Forget the run (after its commit)."""
        if self.fs.get_file_info(self.directory).type != pafs.FileType.NotFound:
            self.fs.delete_dir(self.directory)
