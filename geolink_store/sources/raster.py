"""One GDAL-readable raster read chip by chip: windowed, resampled onto the chip grid, scaled to RGB 0..1.

A chip in the raster's own CRS (north up) that lies inside it, over valid pixels only, is one windowed read
resampled in numpy (:mod:`geolink_store.sources.window`: the same kernels, several times faster). Every other
chip warps only the source pixels under it (a ``WarpedVRT`` onto ``ChipSpec.transform``), never the whole
scene; there validity comes from the warper's alpha: pixels outside the raster, source nodata, the source mask
or alpha band all read as invalid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import shapely
from pyproj import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geolink_store.chips import ChipSpec, transformer
from geolink_store.errors import GeolinkError
from geolink_store.sources.window import FAST_KERNELS, is_north_up, plan_window

ResamplingName = Literal["auto", "nearest", "bilinear", "cubic", "average", "lanczos"]
DEFAULT_PERCENTILES = (2.0, 98.0)
STATS_SIZE = 1024  # longest side of the decimated read that percentile stretches are computed from
ALPHA_VALID = 128  # warped alpha at or above this counts as a valid pixel


class RasterSource:
    """A raster file (GeoTIFF, COG, any GDAL format, or VRT XML) read onto chip grids.

    Args:
        path: a file GDAL can open, or the XML text of a VRT.
        bands: 1-based band indexes to use: three (R, G, B) or one (panchromatic, repeated to three channels).
            Default: the bands tagged red/green/blue, else bands 1-3, else band 1.
        value_range: ``(low, high)`` source values mapped to 0 and 1 for every band. Default: ``(0, 255)`` for
            uint8 rasters, else a per-band percentile stretch (``percentiles``) over the valid pixels of a
            decimated read (overviews are used when present).
        percentiles: the low and high percentiles of that stretch.
        resampling: GDAL warp kernel. ``"auto"``: ``average`` where a chip pixel is larger than a source pixel
            (anti-aliased and several times faster than a widened bilinear kernel), else ``bilinear``.
        name: a short id of the source for provenance (default: the file name).
        footprint: where the raster holds data, in EPSG:4326 (default: its bounds).

    Raises:
        GeolinkError: the file is missing, unreadable, empty, has no CRS, or ``bands`` are not in it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        bands: Sequence[int] | None = None,
        value_range: tuple[float, float] | None = None,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
        resampling: ResamplingName = "auto",
        name: str | None = None,
        footprint: shapely.Geometry | None = None,
    ) -> None:
        self.path = str(path)
        is_xml = self.path.lstrip().startswith("<")
        if not is_xml and not Path(self.path).is_file():
            raise GeolinkError(f"imagery file {self.path} does not exist")
        self.name = name or ("vrt" if is_xml else Path(self.path).name)
        if resampling != "auto" and resampling not in Resampling.__members__:
            raise GeolinkError(
                f"unknown resampling {resampling!r}; use auto, nearest, bilinear, cubic or average"
            )
        self.resampling = resampling
        self._footprint = footprint
        self._grid_cache: dict[str, tuple[shapely.Geometry, float]] = {}
        self._own_crs: dict[str, bool] = {}
        dataset = self._dataset
        if dataset.crs is None:
            raise GeolinkError(f"imagery {self.name} has no CRS; georeference it (e.g. gdal_edit.py -a_srs)")
        if dataset.width == 0 or dataset.height == 0:
            raise GeolinkError(f"imagery {self.name} holds no pixels")
        self.crs = CRS.from_user_input(dataset.crs.to_wkt())
        self.bands = self._check_bands(bands, dataset)
        self.alpha_band = _alpha_band(dataset)
        low, high = value_range if value_range is not None else self._default_range(dataset, percentiles)
        self.low = np.asarray(low, dtype=np.float32).reshape(-1, 1, 1)
        self.scale = 1.0 / np.maximum(np.asarray(high, dtype=np.float32).reshape(-1, 1, 1) - self.low, 1e-12)

    @cached_property
    def _dataset(self) -> rasterio.DatasetReader:
        try:
            return rasterio.open(self.path)
        except RasterioError as error:
            raise GeolinkError(f"cannot open imagery {self.name}: {_reason(error)}") from error

    def __getstate__(self) -> dict:
        """Pickle without the open dataset; each process reopens it on first use."""
        state = self.__dict__.copy()
        state.pop("_dataset", None)
        return state

    @cached_property
    def footprint(self) -> shapely.Geometry:
        """Where the raster holds data, as a lon/lat polygon (EPSG:4326)."""
        if self._footprint is not None:
            return self._footprint
        box = shapely.segmentize(shapely.box(*self._dataset.bounds), max(self._dataset.res) * 64)
        to_wgs84 = transformer(self.crs, CRS.from_epsg(4326))
        return shapely.transform(box, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])))

    def read(self, spec: ChipSpec) -> tuple[np.ndarray, np.ndarray] | None:
        """Read the raster onto a chip grid (a windowed read where it can, else a warp).

        Returns:
            ``(rgb, valid)``: float32 ``(3, size, size)`` scaled to [0, 1] (clipped), and a bool
            ``(size, size)`` validity mask; ``None`` when the chip misses the raster or holds no valid pixel.

        Raises:
            GeolinkError: the raster cannot be read (e.g. a truncated file).
        """
        bounds, source_pixel = self._grid_in(spec.crs)
        if not bounds.intersects(spec.footprint):
            return None
        resampling = self.resampling
        if resampling == "auto":
            resampling = "average" if spec.pixel_size > source_pixel else "bilinear"
        try:
            pixels = self._read_window(spec, resampling, source_pixel)
            if pixels is None:
                pixels = self._read_warped(spec, resampling)
        except RasterioError as error:
            raise GeolinkError(f"cannot read imagery {self.name}: {_reason(error)}") from error
        rgb, valid = pixels
        if not valid.any():
            return None
        rgb -= self.low
        rgb *= self.scale
        np.clip(rgb, 0.0, 1.0, out=rgb)
        return np.broadcast_to(rgb, (3, spec.size, spec.size)), valid

    def _read_window(
        self, spec: ChipSpec, resampling: str, source_pixel: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The chip as one windowed read resampled in numpy, or None where only the warp gives it.

        That is a chip in another CRS, a kernel the window path does not have (or ``bilinear`` shrinking,
        which GDAL widens), a window past the raster's edge, or one holding a nodata or non-finite pixel.
        Pixels an alpha band or mask marks invalid are weighed out as the warp does.
        """
        dataset = self._dataset
        shrinking = spec.pixel_size > source_pixel
        fits = resampling == "nearest" or (resampling == "average") == shrinking
        if resampling not in FAST_KERNELS or not fits:
            return None
        if not self._in_own_crs(spec.crs):
            return None
        plan = plan_window(spec, dataset.transform, dataset.width, dataset.height, resampling)
        if plan is None:
            return None
        indexes = [*self.bands, self.alpha_band] if self.alpha_band else self.bands
        pixels = dataset.read(indexes, window=plan.window)
        validity = self._validity(pixels, plan.window)
        pixels = pixels[: len(self.bands)]
        if dataset.nodata is not None and (pixels == dataset.nodata).any():
            return None
        if validity is None:
            rgb, valid = plan.resample(pixels), np.ones((spec.size, spec.size), dtype=bool)
        else:
            rgb, valid = plan.resample_valid(pixels, validity)
        if not np.isfinite(rgb).all():
            return None
        if np.issubdtype(pixels.dtype, np.integer):
            np.floor(rgb + 0.5, out=rgb)  # the warp's rounding into an integer raster
        return rgb, valid

    def _validity(self, pixels: np.ndarray, window: Window) -> np.ndarray | None:
        """Each window pixel's validity in [0, 1] from the alpha band and the mask (None: all valid)."""
        validity = None
        if self.alpha_band:
            alpha = pixels[-1]
            full = np.iinfo(alpha.dtype).max if np.issubdtype(alpha.dtype, np.integer) else 1.0
            if (alpha < full).any():
                validity = np.clip(alpha.astype(np.float32) / full, 0.0, 1.0)
        if self._has_mask:
            masked = self._dataset.read_masks(self.bands, window=window).min(axis=0) == 0
            if masked.any():
                validity = np.where(masked, 0.0, 1.0 if validity is None else validity).astype(np.float32)
        return validity

    def _read_warped(self, spec: ChipSpec, resampling: str) -> tuple[np.ndarray, np.ndarray]:
        """The chip warped onto its grid, and where the warper's alpha says it holds data."""
        indexes = [*self.bands, self.alpha_band or self._dataset.count + 1]
        with WarpedVRT(
            self._dataset,
            crs=spec.crs.to_wkt(),
            transform=spec.transform,
            width=spec.size,
            height=spec.size,
            resampling=Resampling[resampling],
            add_alpha=self.alpha_band is None,
        ) as warped:
            pixels = warped.read(indexes)
        rgb = pixels[:-1].astype(np.float32)
        finite = np.isfinite(rgb).all(axis=0)  # NaN/inf pixels of float rasters without a nodata value
        rgb[:, ~finite] = 0.0
        return rgb, (pixels[-1] >= ALPHA_VALID) & finite

    def _in_own_crs(self, crs: CRS) -> bool:
        """Whether chips in ``crs`` can skip the warp: the raster's own CRS, and the raster north up."""
        key = crs.srs
        if key not in self._own_crs:
            self._own_crs[key] = crs == self.crs and is_north_up(self._dataset.transform)
        return self._own_crs[key]

    @cached_property
    def _has_mask(self) -> bool:
        """Whether a band has a mask of its own (beyond nodata and alpha, which are checked directly)."""
        return any(
            MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags
            for flags in (self._dataset.mask_flag_enums[band - 1] for band in self.bands)
        )

    def _grid_in(self, crs: CRS) -> tuple[shapely.Geometry, float]:
        """The raster's bounds and pixel size in another CRS (cached per CRS).

        They serve to skip chips that miss the raster and to choose the resampling kernel.
        """
        key = crs.srs
        if key not in self._grid_cache:
            dataset = self._dataset
            box = shapely.segmentize(shapely.box(*dataset.bounds), max(dataset.res) * 64)
            to_crs = transformer(self.crs, crs)
            bounds = shapely.transform(box, lambda xy: np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1])))
            west, south, east, north = bounds.bounds
            pixel = min((east - west) / dataset.width, (north - south) / dataset.height)
            self._grid_cache[key] = bounds, pixel
        return self._grid_cache[key]

    def _check_bands(self, bands: Sequence[int] | None, dataset: rasterio.DatasetReader) -> list[int]:
        if bands is None:
            return _default_bands(dataset)
        bands = [int(band) for band in bands]
        if len(bands) not in (1, 3) or not all(1 <= band <= dataset.count for band in bands):
            raise GeolinkError(
                f"bands {bands} do not fit imagery {self.name}: "
                f"give 1 or 3 band numbers from 1 to {dataset.count}"
            )
        return bands

    def _default_range(
        self, dataset: rasterio.DatasetReader, percentiles: tuple[float, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        if dataset.dtypes[self.bands[0] - 1] == "uint8":
            return np.zeros(len(self.bands)), np.full(len(self.bands), 255.0)
        scale = min(1.0, STATS_SIZE / max(dataset.width, dataset.height))
        shape = (len(self.bands), max(1, round(dataset.height * scale)), max(1, round(dataset.width * scale)))
        try:
            sample = dataset.read(self.bands, out_shape=shape, masked=True)
        except RasterioError as error:
            raise GeolinkError(f"cannot read imagery {self.name}: {_reason(error)}") from error
        values = [band.compressed().astype(np.float64) for band in sample]
        if not values[0].size:
            raise GeolinkError(f"imagery {self.name} holds only nodata")
        low, high = zip(*(np.percentile(band, percentiles) for band in values), strict=True)
        return np.array(low), np.array(high)


def _default_bands(dataset: rasterio.DatasetReader) -> list[int]:
    interp = list(dataset.colorinterp)
    rgb = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(colour in interp for colour in rgb):
        return [interp.index(colour) + 1 for colour in rgb]
    colour_bands = [i + 1 for i, colour in enumerate(interp) if colour != ColorInterp.alpha]
    return colour_bands[:3] if len(colour_bands) >= 3 else colour_bands[:1]


def _alpha_band(dataset: rasterio.DatasetReader) -> int | None:
    interp = list(dataset.colorinterp)
    return interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp else None


def _reason(error: Exception) -> str:
    """The most specific message of a rasterio error chain, on one line."""
    while error.__cause__ is not None and str(error).startswith("Read failed"):
        error = error.__cause__
    return " ".join(str(error).split())
