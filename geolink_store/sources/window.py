"""Chips in a raster's own CRS read as one window and resampled separably, without a GDAL warp.

Where the chip grid and a north-up raster share their CRS, each chip axis maps onto one source axis by a scale
and an offset, so the warp reduces to two banded weight matrices: ``chip = rows @ window @ cols.T`` per band,
kept sparse (a few weights per chip pixel; sparse products stay on this thread, where numpy's dense ``@``
would fan out to BLAS threads).
The weights follow GDAL's warp kernels (pixel centres at +0.5; ``bilinear`` between the two nearest source
centres; ``average`` over the source pixels a chip pixel covers, partial pixels by their covered share;
``nearest`` the pixel under the centre), so the pixels equal the warped path's within rounding. Where some
source pixels are invalid (alpha, mask), each weight is scaled by the pixel's validity, as the warper weighs
them, and a chip pixel is valid where the warper's alpha would be: where any valid source pixel lies under it
(``average``), or where the source pixel under its centre is valid (``bilinear``, ``nearest``).
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
        centres: the window row and column under each chip row's and column's centre.
        kernel: the resampling kernel the weights follow.
    """

    window: Window
    rows: sparse.csr_array
    cols_t: sparse.csc_array
    centres: tuple[np.ndarray, np.ndarray]
    kernel: str

    def resample(self, pixels: np.ndarray) -> np.ndarray:
        """The chip ``(bands, size, size)`` float32 from the window's pixels ``(bands, height, width)``."""
        pixels = pixels.astype(np.float32, copy=False)
        return np.stack([self.rows @ (band @ self.cols_t) for band in pixels])

    def resample_valid(self, pixels: np.ndarray, validity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The chip and its validity mask from pixels whose validity ``(height, width)`` is in [0, 1].

        Each weight is scaled by its pixel's validity; invalid chip pixels are 0.
        """
        weight = self.resample(validity[None])[0]
        if self.kernel == "average":
            valid = weight > 0.0
        else:
            valid = (validity[np.ix_(*self.centres)] >= 0.5) & (weight > 0.0)
        chip = self.resample(pixels * validity) / np.where(valid, weight, 1.0)
        chip[:, ~valid] = 0.0
        return chip, valid


def is_north_up(transform: Affine) -> bool:
    """Whether a raster's pixel grid is axis-aligned, north up (no rotation, rows run south)."""
    return transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0


def plan_window(spec: ChipSpec, transform: Affine, width: int, height: int, kernel: str) -> WindowPlan | None:
    """How to read ``spec`` from a north-up raster in the chip's own CRS.

    None where the window would reach past the raster's edge (the warp handles those chips).
    """
    west, _, _, north = spec.bounds
    cols = _Axis.plan((west - transform.c) / transform.a, spec.pixel_size / transform.a, spec.size, kernel)
    rows = _Axis.plan((transform.f - north) / -transform.e, spec.pixel_size / -transform.e, spec.size, kernel)
    if cols.first < 0 or cols.last > width or rows.first < 0 or rows.last > height:
        return None
    window = Window(cols.first, rows.first, cols.last - cols.first, rows.last - rows.first)
    return WindowPlan(
        window,
        rows.weights(sparse.csr_array),
        cols.weights(sparse.csc_array),
        (rows.centre - rows.first, cols.centre - cols.first),
        kernel,
    )


@dataclass(frozen=True)
class _Axis:
    """One chip axis's taps: chip pixel ``i`` reads source pixel ``index[i, t]`` with weight ``taps[i, t]``.

    Taps past a pixel's last source pixel weigh 0 (and repeat its index): every chip pixel has as many.
    """

    index: np.ndarray
    taps: np.ndarray
    centre: np.ndarray
    first: int
    last: int

    @classmethod
    def plan(cls, start: float, step: float, size: int, kernel: str) -> _Axis:
        """The taps of chip pixels ``i`` spanning source coordinates ``start + i * step`` to ``+ step``."""
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
        index = low[:, None] + np.arange(int((high - low).max()))
        inside = index < high[:, None]
        if kernel == "average":
            taps = np.minimum(index + 1, edges[1:, None]) - np.maximum(index, edges[:-1, None])
        elif kernel == "bilinear":
            right = (centres - 0.5 - low)[:, None]
            taps = np.where(index == low[:, None], 1.0 - right, right)
        else:
            taps = np.ones(index.shape)
        taps = np.where(inside, np.clip(taps, 0.0, None), 0.0)
        taps /= taps.sum(axis=1, keepdims=True)
        last = int(high.max())
        centre = np.floor(centres).astype(np.int64)
        return cls(np.minimum(index, last - 1), taps.astype(np.float32), centre, int(low.min()), last)

    def weights(self, kind: type) -> sparse.csr_array | sparse.csc_array:
        """The ``(size, n)`` weights as ``csr_array``, or their transpose as ``csc_array`` (same arrays)."""
        size, count = self.taps.shape
        pointers = np.arange(size + 1) * count
        shape = (size, self.last - self.first) if kind is sparse.csr_array else (self.last - self.first, size)
        return kind((self.taps.ravel(), (self.index - self.first).ravel(), pointers), shape=shape)
