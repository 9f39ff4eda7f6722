"""Chips in a raster's own CRS read as one window and resampled separably, without a GDAL warp.

Where the chip grid and a north-up raster share their CRS, each chip axis maps onto one source axis by a scale
and an offset, so the warp reduces to two banded weight matrices: ``chip = rows @ window @ cols.T`` per band,
kept sparse (a few weights per chip pixel; sparse products stay on this thread, where numpy's dense ``@``
would fan out to BLAS threads).
The weights follow GDAL's warp kernels (pixel centres at +0.5; ``bilinear`` between the two nearest source
centres; ``average`` over the source pixels a chip pixel covers, partial pixels by their covered share;
``nearest`` the pixel under the centre), so the pixels equal the warped path's within rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window
from scipy import sparse

from geolink_store.chips import ChipSpec

FAST_KERNELS = ("nearest", "bilinear", "average")
"""The kernels this path reproduces; any other goes through the warp."""
EPSILON = 1e-9  # source-pixel units: edges that land on a pixel boundary up to rounding count as on it


@dataclass(frozen=True)
class WindowPlan:
    """A chip as a source window and the weights that resample it.

    Attributes:
        window: the source pixels to read (inside the raster).
        rows: ``(size, window.height)`` sparse weights, chip row <- source rows.
        cols_t: ``(window.width, size)`` sparse weights, source columns -> chip column.
    """

    window: Window
    rows: sparse.csr_array
    cols_t: sparse.csc_array

    def resample(self, pixels: np.ndarray) -> np.ndarray:
        """The chip ``(bands, size, size)`` float32 from the window's pixels ``(bands, height, width)``."""
        pixels = pixels.astype(np.float32, copy=False)
        return np.stack([self.rows @ (band @ self.cols_t) for band in pixels])


def is_north_up(transform: Affine) -> bool:
    """Whether a raster's pixel grid is axis-aligned, north up (no rotation, rows run south)."""
    return transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0


def plan_window(spec: ChipSpec, transform: Affine, width: int, height: int, kernel: str) -> WindowPlan | None:
    """How to read ``spec`` from a north-up raster in the chip's own CRS.

    None where the window would reach past the raster's edge (the warp handles those chips).
    """
    west, _, _, north = spec.bounds
    cols = _axis((west - transform.c) / transform.a, spec.pixel_size / transform.a, spec.size, width, kernel)
    rows = _axis(
        (transform.f - north) / -transform.e, spec.pixel_size / -transform.e, spec.size, height, kernel
    )
    if cols is None or rows is None:
        return None
    (col0, col_weights), (row0, row_weights) = cols, rows
    window = Window(col0, row0, col_weights.shape[1], row_weights.shape[1])
    return WindowPlan(window, _banded(row_weights, sparse.csr_array), _banded(col_weights, sparse.csc_array))


def _axis(start: float, step: float, size: int, length: int, kernel: str) -> tuple[int, np.ndarray] | None:
    """The first source index and the ``(size, n)`` weights of one chip axis.

    Chip pixel ``i`` spans source coordinates ``start + i * step`` to ``start + (i + 1) * step``.
    """
    edges = start + np.arange(size + 1) * step
    centres = (edges[:-1] + edges[1:]) / 2
    if kernel == "average":
        low = np.floor(edges[:-1] + EPSILON).astype(np.int64)
        high = np.ceil(edges[1:] - EPSILON).astype(np.int64)
    elif kernel == "bilinear":
        low = np.floor(centres - 0.5).astype(np.int64)
        high = low + 2
    else:
        low = np.floor(centres).astype(np.int64)
        high = low + 1
    first, last = int(low.min()), int(high.max())
    if first < 0 or last > length:
        return None
    index = np.arange(first, last)
    if kernel == "average":
        covered = np.minimum(index + 1, edges[1:, None]) - np.maximum(index, edges[:-1, None])
        weights = np.clip(covered, 0.0, None)
    elif kernel == "bilinear":
        right = centres - 0.5 - low
        weights = np.where(index == low[:, None], 1.0 - right[:, None], 0.0)
        weights += np.where(index == low[:, None] + 1, right[:, None], 0.0)
    else:
        weights = (index == low[:, None]).astype(np.float64)
    weights /= weights.sum(axis=1, keepdims=True)
    return first, weights.astype(np.float32)


def _banded(weights: np.ndarray, kind: type) -> sparse.csr_array | sparse.csc_array:
    """``weights`` as a sparse array, built from its non-zeros directly (a dense conversion costs more).

    ``kind`` ``csc_array`` gives the transpose's CSC form: the same arrays read column by column.
    """
    row, col = np.nonzero(weights)
    pointers = np.searchsorted(row, np.arange(weights.shape[0] + 1))
    shape = weights.shape if kind is sparse.csr_array else weights.shape[::-1]
    return kind((weights[row, col], col, pointers), shape=shape)
