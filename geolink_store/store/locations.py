"""Where a store lives: a local directory or an object-store URI (``s3://``, ``gs://``, ``az://``...)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` is an object-store URI rather than a local path."""
    scheme, sep, _ = str(location).partition("://")
    return bool(sep) and scheme != "file"


def file_system(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """A pyarrow file system for ``location`` (local or object store) and the path of ``location`` in it."""
    if is_remote(location):
        return pafs.FileSystem.from_uri(str(location))
    return pafs.LocalFileSystem(), str(Path(location).resolve())


def size_bytes(location: str | Path) -> int:
    """The total size of the files under ``location``."""
    filesystem, root = file_system(location)
    files = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    return sum(f.size for f in files if f.type == pafs.FileType.File)
