"""An ingest's inputs checked before anything heavy is imported or loaded (torch, the model, the data).

Both :func:`~geolink_store.pipeline.plan.plan_ingest` and the ``geolink ingest`` command (before it imports
the pipeline) call :func:`check_ingest_inputs`, so a wrong path, resolution or region fails in about a second.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from geolink_store import grid
from geolink_store.errors import InputError, StoreError
from geolink_store.regions import CheckedRegion, checked_region


def check_ingest_inputs(
    db: str | os.PathLike,
    region: grid.Region,
    imagery: Sequence[str | os.PathLike],
    osm: str | os.PathLike | None,
    res: int,
    fine_res: int,
) -> CheckedRegion:
    """Check an ingest's inputs without reading the data; return the region as checked.

    Raises:
        InputError: an empty store location, a bad resolution or region, missing imagery or OSM.
        StoreError: the store location is a file or cannot be written to.
    """
    check_writable_store(db)
    grid.check_resolution(res)
    grid.check_resolution(fine_res, "fine resolution")
    if fine_res <= res:
        raise InputError(f"the fine resolution fine_res={fine_res} must be finer than res={res}")
    if not imagery:
        raise InputError("no imagery given: pass at least one raster file or tile folder")
    for path in imagery:
        if not Path(path).exists():
            raise InputError(f"imagery path {path} does not exist")
    if osm is not None and not Path(osm).exists():
        raise InputError(f"OSM source not found: {osm}")
    return checked_region(region, res)


def check_writable_store(db: str | os.PathLike) -> None:
    """Refuse an empty store location, a file, and a local store folder this process cannot write to.

    The folder is probed by creating (and at once removing) a file in it: permission bits alone do not tell
    (root, ACLs, read-only mounts).
    """
    location = str(db)
    if not location.strip():
        raise InputError("the store location db= is empty: give a directory or an s3://, gs://, az:// URI")
    path = Path(location)  # an object-store URI names no local path, and is left to the store
    if path.exists() and not path.is_dir():
        raise StoreError(f"store path {path} is a file; a store is a directory")
    if not path.is_dir():
        return
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise StoreError(f"cannot write to store {path}: {error.strerror}") from None
