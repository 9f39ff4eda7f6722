"""The store's imagery read back by window: 256 px web-map tiles and backdrops under drawn cells.

The ``imagery`` table (written at ingest) says where each source is and how it was read; every read goes
through :meth:`geolink_store.sources.mosaic.ImagerySource.read` onto the target grid (a GDAL warped window),
never a whole-scene load. A store written before that table existed, or whose files have moved, simply has
no imagery: :attr:`StoreImagery.missing` says why.
"""

from __future__ import annotations

import io
import json
import threading
from functools import lru_cache

import numpy as np
from PIL import Image
from pyproj import CRS

from geolink_store.chips import ChipSpec
from geolink_store.constants import EPOCH_COLUMN, IMAGERY, WEB_MERCATOR
from geolink_store.errors import GeolinkError, InputError
from geolink_store.sources.mosaic import ImagerySource, open_imagery
from geolink_store.sources.raster import RasterSource
from geolink_store.sources.xyz import tile_bounds
from geolink_store.store import Store

TILE_SIZE = 256
READ_OPTIONS = ("bands", "value_range", "resampling")
"""The ``imagery.options`` keys that :func:`~geolink_store.sources.mosaic.open_imagery` takes."""
MAX_ZOOM = 24


def png_bytes(rgba: np.ndarray) -> bytes:
    """A (H, W, 4) uint8 image as PNG bytes (fast compression: tiles are made on request)."""
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


EMPTY_TILE = png_bytes(np.zeros((TILE_SIZE, TILE_SIZE, 4), dtype=np.uint8))
"""A fully transparent tile: what a tile outside the imagery gets (not a 404, which browsers log)."""


class StoreImagery:
    """The imagery sources of one store epoch, opened once, read by window (thread-safe: reads take turns).

    Args:
        store: an open store.
        epoch: which epoch's imagery; default: the most recently recorded one.
    """

    def __init__(self, store: Store, epoch: str | None = None) -> None:
        self.source: ImagerySource | None = None
        self.bounds: tuple[float, float, float, float] | None = None
        self.epochs: list[str] = []
        self.missing = ""
        self._lock = threading.Lock()
        self._tile = lru_cache(maxsize=2048)(self._render_tile)
        rows = store.table(IMAGERY).to_arrow().to_pylist() if IMAGERY in store.table_names() else []
        if not rows:
            self.missing = "this store records no imagery (it was ingested before the imagery table existed)"
            return
        self.epochs = sorted({row[EPOCH_COLUMN] for row in rows})
        if epoch is None:
            epoch = max(rows, key=lambda row: row["created_at"])[EPOCH_COLUMN]
        if epoch not in self.epochs:
            raise GeolinkError(f"no imagery recorded for epoch {epoch!r}; recorded: {', '.join(self.epochs)}")
        chosen = [row for row in rows if row[EPOCH_COLUMN] == epoch]
        try:
            sources = [_open_row(row) for row in chosen]
        except GeolinkError as error:
            self.missing = f"the store's imagery cannot be opened ({error})"
            return
        self.epoch = epoch
        self.source = ImagerySource(sources)
        self.bounds = (
            min(row["west"] for row in chosen),
            min(row["south"] for row in chosen),
            max(row["east"] for row in chosen),
            max(row["north"] for row in chosen),
        )

    def read(self, crs: CRS | str, bounds: tuple[float, float, float, float], size: int) -> np.ndarray | None:
        """The imagery on a ``size`` x ``size`` grid over ``bounds`` (in ``crs``): (size, size, 4) RGBA uint8.

        Pixels without imagery are transparent; None where no source holds a pixel (or there is no imagery).
        """
        if self.source is None:
            return None
        spec = ChipSpec(cell=0, crs=CRS.from_user_input(crs), bounds=tuple(bounds), size=size)
        with self._lock:
            chip = self.source.read(spec)
        if chip is None:
            return None
        alpha = np.where(chip.valid, 255, 0).astype(np.uint8)
        return np.dstack([chip.rgb(), alpha])

    def tile(self, z: int, x: int, y: int) -> bytes:
        """The PNG of web-map tile ``z/x/y`` (row 0 at the north); transparent where there is no imagery.

        Raises:
            InputError: ``z``, ``x`` or ``y`` out of range.
        """
        if not (0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
            raise InputError(f"tile {z}/{x}/{y} does not exist: need 0 <= z <= {MAX_ZOOM}, 0 <= x, y < 2**z")
        return self._tile(z, x, y)

    def _render_tile(self, z: int, x: int, y: int) -> bytes:
        rgba = self.read(WEB_MERCATOR, tile_bounds(x, y, z), TILE_SIZE) if self.source is not None else None
        return EMPTY_TILE if rgba is None else png_bytes(rgba)


def _open_row(row: dict) -> RasterSource:
    """The raster source of one ``imagery`` row, read with the options recorded at ingest."""
    options = {key: value for key, value in json.loads(row["options"] or "{}").items() if key in READ_OPTIONS}
    if options.get("value_range") is not None:
        options["value_range"] = tuple(options["value_range"])
    (source,) = open_imagery([row["uri"]], **options).sources
    return source
