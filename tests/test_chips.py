"""An OSM building lands on its own pixels: labels burnt into the source's pixel grid and read through the
chip path agree, to within one pixel, with the same buildings mapped by ``ChipSpec.to_chip_frame``.

Real data: SpaceNet Atlanta (EPSG:32616 GeoTIFF, and a copy warped to EPSG:4326) and Kampala OpenAerialMap
zoom-21 tiles (Web Mercator, chips in that same frame), both the shared originals and the bundled sample.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize
from rasterio.warp import calculate_default_transform, reproject
from scipy.ndimage import binary_dilation

from geolink_store.chips import ChipSpec, chip_for_cell
from geolink_store.grid import cell_lonlat, region_cells
from geolink_store.sample import kampala_sample
from geolink_store.sources.mosaic import ImagerySource, open_imagery
from geolink_store.sources.xyz import find_tiles, tile_bounds

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

MIN_AGREEMENT = 0.99  # share of one mask's pixels within 1 px of the other mask
MIN_BUILDINGS = 3  # per chip, so that each chip tests several buildings


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of ``a``'s pixels that lie within one pixel (8-neighbourhood) of ``b``."""
    return float((a & binary_dilation(b, structure=np.ones((3, 3), bool))).sum() / max(a.sum(), 1))


def frame_mask(buildings: gpd.GeoSeries, spec: ChipSpec, shift_px: float = 0.0) -> np.ndarray:
    """Buildings mapped into the chip frame by ``to_chip_frame`` and rasterised at the chip's size."""
    frame = spec.to_chip_frame(buildings.to_crs(spec.crs).to_numpy())
    frame = shapely.transform(frame, lambda xy: xy + shift_px / spec.size)
    pixels = Affine.scale(1.0 / spec.size)  # pixel (col, row) -> frame (x, y)
    return rasterize(((g, 1) for g in frame), out_shape=(spec.size, spec.size), transform=pixels).astype(bool)


def chip_mask(label_paths: Path | list[Path], spec: ChipSpec) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0 / 255) read through the imagery chip path: (building mask, valid mask)."""
    chip = open_imagery(label_paths).read(spec)
    assert chip is not None
    return chip.rgb()[..., 0] >= 128, chip.valid


def check_chips(label_paths, buildings: gpd.GeoSeries, cells: np.ndarray, crs, min_chips: int) -> None:
    """Every chip with several buildings agrees with the frame mapping; a 3-pixel shift would not."""
    tested = 0
    for cell in cells:
        spec = chip_for_cell(int(cell), crs)
        inside = buildings[buildings.to_crs(spec.crs).within(spec.footprint)]
        if len(inside) < MIN_BUILDINGS:
            continue
        from_pixels, valid = chip_mask(label_paths, spec)
        if valid.mean() < 0.95:
            continue
        from_geometry = frame_mask(buildings, spec) & valid
        from_pixels &= valid
        assert from_pixels.sum() > 500
        assert agreement(from_pixels, from_geometry) >= MIN_AGREEMENT, cell
        assert agreement(from_geometry, from_pixels) >= MIN_AGREEMENT, cell
        shifted = frame_mask(buildings, spec, shift_px=3.0) & valid
        assert agreement(from_pixels, shifted) < 0.95  # the check can fail
        tested += 1
    assert tested >= min_chips


def burn_geotiff(raster: Path, buildings: gpd.GeoDataFrame, out: Path) -> Path:
    """The buildings rasterised (255) in the raster's own pixel grid, saved as a GeoTIFF."""
    with rasterio.open(raster) as source:
        profile = {**source.profile, "count": 1, "dtype": "uint8", "nodata": None}
        shapes = buildings.to_crs(source.crs).geometry
        burnt = rasterize(((g, 255) for g in shapes), out_shape=source.shape, transform=source.transform)
    with rasterio.open(out, "w", **profile) as target:
        target.write(burnt.astype(np.uint8), 1)
    return out


def burn_tiles(tile_folder: Path, buildings: gpd.GeoDataFrame, out: Path) -> Path:
    """The buildings rasterised on each tile's own Web Mercator pixel grid, saved as same-named RGB tiles."""
    out.mkdir()
    shapes = list(buildings.to_crs("EPSG:3857").geometry)
    for tile in find_tiles(tile_folder):
        transform = rasterio.transform.from_bounds(*tile_bounds(tile.x, tile.y, tile.z), 256, 256)
        burnt = rasterize(((g, 255) for g in shapes), out_shape=(256, 256), transform=transform, fill=0)
        with rasterio.open(
            out / f"OAM-{tile.x}-{tile.y}-{tile.z}.png",
            "w",
            driver="PNG",
            width=256,
            height=256,
            count=3,
            dtype="uint8",
        ) as target:
            target.write(np.repeat(burnt[None].astype(np.uint8), 3, axis=0))
    return out


@pytest.fixture(scope="module")
def atlanta(shared_data: Path) -> tuple[Path, gpd.GeoDataFrame]:
    folder = shared_data / "atlanta_spacenet"
    return folder / "sample_geotiff.tif", gpd.read_file(folder / "geotiff_labels.geojson")


def test_atlanta_building_on_its_pixels(atlanta, tmp_path: Path) -> None:
    raster, buildings = atlanta
    labels = burn_geotiff(raster, buildings, tmp_path / "labels.tif")
    source = open_imagery(raster)
    cells = source.covered_cells(region_cells(source.footprint, 10))
    check_chips(labels, buildings.geometry, cells, source.chip_crs(*cell_lonlat(cells[:1])), min_chips=3)


def test_atlanta_in_lonlat_building_on_its_pixels(atlanta, tmp_path: Path) -> None:
    raster, buildings = atlanta
    warped = tmp_path / "atlanta_4326.tif"
    with rasterio.open(raster) as source:
        transform, width, height = calculate_default_transform(
            source.crs, "EPSG:4326", source.width, source.height, *source.bounds
        )
        profile = {
            **source.profile,
            "crs": "EPSG:4326",
            "transform": transform,
            "width": width,
            "height": height,
        }
        with rasterio.open(warped, "w", **profile) as target:
            reproject(
                rasterio.band(source, 1),
                rasterio.band(target, 1),
                resampling=rasterio.enums.Resampling.bilinear,
            )
    labels = burn_geotiff(warped, buildings, tmp_path / "labels.tif")
    source = open_imagery(warped)
    cells = source.covered_cells(region_cells(source.footprint, 10))
    lon, lat = cell_lonlat(cells[:1])
    crs = source.chip_crs(lon[0], lat[0])
    assert crs.to_epsg() == 32616  # a lon/lat raster gets chips in its local UTM zone
    check_chips(labels, buildings.geometry, cells, crs, min_chips=3)


def kampala_check(tile_folder: Path, buildings_file: Path, tmp_path: Path, min_chips: int) -> None:
    buildings = gpd.read_file(buildings_file)
    labels = burn_tiles(tile_folder, buildings, tmp_path / "labels")
    source = open_imagery(tile_folder)
    cells = source.covered_cells(region_cells(source.footprint, 11))
    lon, lat = cell_lonlat(cells[:1])
    crs = source.chip_crs(lon[0], lat[0])
    assert crs.to_epsg() == 3857  # Web Mercator tiles get chips in their own (conformal) frame
    check_chips(labels, buildings.geometry, cells, crs, min_chips=min_chips)


def test_kampala_tiles_building_on_its_pixels(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "kampala_oam"
    kampala_check(folder, folder / "labels.geojson", tmp_path, min_chips=4)


def test_bundled_sample_building_on_its_pixels(tmp_path: Path) -> None:
    sample = kampala_sample()
    kampala_check(sample.imagery, sample.osm, tmp_path, min_chips=2)


# ---- the window path (chips in the raster's own CRS) gives the warp's pixels ----

ONE_GREY = 1.0 / 255 + 1e-6  # in [0, 1] RGB units, after the source's scaling


def compare_window_to_warp(source: ImagerySource, cells: np.ndarray, size: int = 224) -> tuple[int, int]:
    """Check each cell's chip the window path reads against the warp: the same validity mask, and pixels
    within one grey level. Returns how many chips it compared, and how many of those hold invalid pixels."""
    (raster_source,) = source.sources
    crs = raster_source.crs
    _, source_pixel = raster_source._grid_in(crs)
    compared = with_holes = 0
    for cell in cells:
        spec = chip_for_cell(int(cell), crs, size=size)
        kernel = "average" if spec.pixel_size > source_pixel else "bilinear"
        window = raster_source._read_window(spec, kernel, source_pixel)
        if window is None:
            continue
        (window_rgb, window_valid), (rgb, valid) = window, raster_source._read_warped(spec, kernel)
        assert np.array_equal(window_valid, valid), cell
        difference = np.abs(window_rgb - rgb)[:, valid] * raster_source.scale[:, 0]  # -> [0, 1] RGB
        assert difference.max(initial=0) <= ONE_GREY, (cell, difference.max() * 255)
        compared += 1
        with_holes += not valid.all()
    return compared, with_holes


@pytest.mark.parametrize(
    ("raster", "res", "size"),
    [
        ("atlanta_spacenet/sample_geotiff.tif", 12, 224),  # uint16 pan, 0.5 m -> 0.1 m: bilinear
        ("atlanta_spacenet/sample_geotiff.tif", 11, 56),  # 0.5 m -> 1 m: average
        ("naip_north_dakota/m_4709963_se_14_1_20100629.tif", 10, 224),  # uint8 RGB(N), deflate, nodata 0
        ("naip_north_dakota/m_4709963_se_14_1_20200831.tif", 9, 24),  # 5 m -> 14 m: average
        ("bundled sample", 13, 224),  # XYZ tiles (RGBA VRT, EPSG:3857), 0.07 m -> 0.03 m: bilinear, alpha
        ("bundled sample", 12, 224),  # 0.07 m -> 0.1 m: average over transparent pixels
    ],
)
def test_window_path_gives_the_warped_pixels(shared_data: Path, raster: str, res: int, size: int) -> None:
    """Every chip the window path reads (most of them) equals the warp's within one grey level, and so does
    its validity (transparent tile pixels weighed out as the warp does)."""
    source = open_imagery(kampala_sample().imagery if raster == "bundled sample" else shared_data / raster)
    (raster_source,) = source.sources
    cells = source.covered_cells(region_cells(source.footprint, res))
    assert source.chip_crs(*(v[0] for v in cell_lonlat(cells[:1]))) == raster_source.crs
    compared, with_holes = compare_window_to_warp(source, cells, size)
    assert compared >= max(5, cells.size // 3), (compared, cells.size)  # most chips take the window path
    if raster == "bundled sample":
        assert with_holes >= 5  # the sample's tiles have transparent pixels: the weighting is exercised


@pytest.mark.parametrize("res", [11, 12])  # 0.5 m -> 1 m: average; -> 0.1 m: bilinear
def test_window_path_weighs_out_a_mask_as_the_warp_does(atlanta, tmp_path: Path, res: int) -> None:
    """The Atlanta scene with an internal mask hiding its buildings: same validity, pixels within a grey."""
    path, buildings = atlanta
    masked = tmp_path / "masked.tif"
    with rasterio.open(path) as source:
        hidden = rasterize(
            buildings.to_crs(source.crs).geometry, out_shape=source.shape, transform=source.transform
        )
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            with rasterio.open(masked, "w", **source.profile) as out:
                out.write(source.read())
                out.write_mask(np.where(hidden > 0, 0, 255).astype(np.uint8))
    source = open_imagery(masked)
    (raster_source,) = source.sources
    assert raster_source._has_mask
    cells = source.covered_cells(region_cells(source.footprint, res))
    compared, with_holes = compare_window_to_warp(source, cells)
    assert compared >= 5 and with_holes >= 3, (compared, with_holes)
