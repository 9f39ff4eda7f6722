"""A table's Lance versions as files: the manifests under ``_versions/``, each version's files, restoring one.

Lance names a manifest ``{version}.manifest`` or, in its newer layout, ``{2**64 - 1 - version:020d}.manifest``
(so that the newest sorts first). Listing the files rather than asking Lance finds the versions even when the
newest manifest is unreadable, which is when they are needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from geolink_store.errors import StoreError
from geolink_store.store._lance import dataset
from geolink_store.store.damage import is_damage
from geolink_store.store.locations import file_system

if TYPE_CHECKING:
    from lance import LanceDataset

_NEWEST_FIRST_BASE = 2**64 - 1
DAMAGED_FOLDER = "_damaged"
"""Where :func:`restore` moves unreadable manifests, inside the table's folder."""
_PURPOSE = "reading a table's versions"


def manifests(uri: str) -> dict[int, str]:
    """Every version of the Lance dataset at ``uri`` that has a manifest file, to that file's path."""
    filesystem, root = file_system(uri)
    selector = pafs.FileSelector(f"{root}/_versions", allow_not_found=True)
    found = {}
    for info in filesystem.get_file_info(selector):
        if info.base_name.endswith(".manifest"):
            number = int(info.base_name.removesuffix(".manifest"))
            found[_NEWEST_FIRST_BASE - number if number > 2**63 else number] = info.path
    return found


def table_files(uri: str) -> dict[str, int]:
    """The files under the dataset at ``uri``, by path relative to it, to their sizes in bytes."""
    filesystem, root = file_system(uri)
    listing = filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {f.path[len(root) + 1 :]: f.size for f in listing if f.type == pafs.FileType.File}


def open_version(uri: str, table: str, version: int | None = None) -> LanceDataset | None:
    """The dataset at ``version`` (default: the newest), or None when its manifest cannot be read."""
    try:
        return dataset(uri, _PURPOSE, version)
    except Exception as error:
        if is_damage(error, table):
            return None
        raise


def data_files(ds: LanceDataset) -> set[str]:
    """The data and deletion files a version reads, relative to the dataset."""
    paths = set()
    for fragment in ds.get_fragments():
        paths.update(f"data/{data.path}" for data in fragment.data_files())
        deletion = fragment.metadata.deletion_file
        if deletion is not None:
            paths.add(deletion.path(fragment.fragment_id))
    return paths


def restore(uri: str, table: str, version: int) -> int:
    """Make ``version`` of the dataset the newest again, in a new commit; returns the newest version after.

    Newer manifests that cannot be read are moved into ``_damaged/`` first (Lance cannot commit over them);
    nothing is deleted.

    Raises:
        StoreError: the table has no such version, or its manifest cannot be read either.
    """
    found = manifests(uri)
    if version not in found:
        raise StoreError(
            f"table {table} has no version {version} (versions: {', '.join(map(str, sorted(found)))})"
        )
    target = open_version(uri, table, version)
    if target is None:
        raise StoreError(f"version {version} of table {table} is unreadable too; pick an older one")
    filesystem, root = file_system(uri)
    for newer in sorted(v for v in found if v > version):
        if open_version(uri, table, newer) is None:
            filesystem.create_dir(f"{root}/{DAMAGED_FOLDER}", recursive=True)
            filesystem.move(found[newer], f"{root}/{DAMAGED_FOLDER}/{found[newer].rsplit('/', 1)[-1]}")
    if max(manifests(uri)) == version:
        return version
    target.restore()
    return dataset(uri, _PURPOSE).version
