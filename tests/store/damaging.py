"""Real damage to a real Lance table on disk, as a crash, a bad copy or a careless user leaves it.

Each function damages the files of one table folder (``<store>/<table>.lance``) and returns the path it hit.
"""

from __future__ import annotations

import os
from pathlib import Path


def newest_data_file(table: Path) -> Path:
    """The data file written last (the newest commit's)."""
    return max((table / "data").glob("*.lance"), key=os.path.getmtime)


def newest_manifest(table: Path) -> Path:
    """The manifest of the newest version (Lance's newer layout sorts it first)."""
    return min((table / "_versions").glob("*.manifest"))


def delete_newest_data_file(table: Path) -> Path:
    path = newest_data_file(table)
    path.unlink()
    return path


def truncate_newest_data_file(table: Path) -> Path:
    path = newest_data_file(table)
    os.truncate(path, path.stat().st_size // 2)
    return path


def corrupt_newest_manifest(table: Path) -> Path:
    """Cut the newest manifest in half (a copy interrupted, a disk full)."""
    path = newest_manifest(table)
    os.truncate(path, path.stat().st_size // 2)
    return path


def delete_vector_index_files(table: Path) -> list[Path]:
    """Remove the ``index.idx`` file of every vector index segment."""
    paths = sorted((table / "_indices").glob("*/index.idx"))
    for path in paths:
        path.unlink()
    return paths


DAMAGE = {
    "deleted data file": delete_newest_data_file,
    "truncated data file": truncate_newest_data_file,
    "corrupt manifest": corrupt_newest_manifest,
}
"""The damage every reading command must name."""
