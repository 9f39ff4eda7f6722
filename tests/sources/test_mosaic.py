"""Imagery chips: warped windows of real rasters and tile folders, scaling, validity, mosaics, bad input."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window

from geolink_store.chips import ChipTally, chip_for_cell, read_chips
from geolink_store.constants import IMAGENET_MEAN, IMAGENET_STD
from geolink_store.errors import GeolinkError
from geolink_store.grid import cell_lonlat, region_cells
from geolink_store.sample import kampala_sample
from geolink_store.sources.mosaic import ImagerySource, open_imagery
from geolink_store.sources.raster import RasterSource
from geolink_store.sources.xyz import find_tiles, tile_bounds

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def first_chip_cell(source: ImagerySource, res: int) -> tuple[int, object]:
    """A cell whose chip lies fully inside the imagery, and the chips' CRS."""
    cells = region_cells(source.footprint, res)
    lon, lat = cell_lonlat(cells[:1])
    crs = source.chip_crs(lon[0], lat[0])
    for cell in cells:
        chip = source.read(chip_for_cell(int(cell), crs))
        if chip is not None and chip.valid.all():
            return int(cell), crs
    raise AssertionError("no fully covered chip")


def denormalised(image: np.ndarray) -> np.ndarray:
    return image * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]


@pytest.fixture(scope="module")
def atlanta(shared_data: Path) -> Path:
    return shared_data / "atlanta_spacenet" / "sample_geotiff.tif"


@pytest.fixture(scope="module")
def naip(shared_data: Path) -> tuple[Path, Path]:
    folder = shared_data / "naip_north_dakota"
    return folder / "m_4709963_se_14_1_20100629.tif", folder / "m_4709963_se_14_1_20200831.tif"


def test_panchromatic_uint16_chip(atlanta: Path) -> None:
    source = open_imagery(atlanta)
    with rasterio.open(atlanta) as dataset:
        pixels = dataset.read(1)
    low, high = np.percentile(pixels[pixels != 0], (2, 98))  # nodata is 0
    raster = source.sources[0]
    assert raster.bands == [1] and np.isclose(raster.low.item(), low)
    assert np.isclose(1 / raster.scale.item(), high - low, rtol=1e-5)

    cell, crs = first_chip_cell(source, 11)
    assert crs.to_epsg() == 32616  # a projected raster keeps its own CRS
    chip = source.read(chip_for_cell(cell, crs))
    assert chip.image.shape == (3, 224, 224) and chip.image.dtype == np.float32
    assert chip.cell == cell and chip.source == "sample_geotiff.tif" and chip.valid_fraction == 1.0
    rgb = denormalised(chip.image)
    assert np.allclose(rgb[0], rgb[1], atol=1e-6) and np.allclose(
        rgb[0], rgb[2], atol=1e-6
    )  # pan -> 3 channels
    assert rgb.min() >= -1e-6 and rgb.max() <= 1 + 1e-6 and rgb.std() > 0.05
    assert chip.rgb().shape == (224, 224, 3) and chip.rgb().dtype == np.uint8


def test_chip_values_follow_the_source_pixels(naip: tuple[Path, Path]) -> None:
    """Where chip and raster grids coincide, the chip holds the raster's pixels, scaled and normalised."""
    with rasterio.open(naip[0]) as dataset:
        source = open_imagery(naip[0], resampling="nearest")
        cell, crs = first_chip_cell(source, 9)
        spec = chip_for_cell(cell, crs)
        chip = source.read(spec)
        rows, cols = dataset.index(*rasterio.transform.xy(spec.transform, 112, 112))  # chip pixel centre
        expected = dataset.read([1, 2, 3], window=Window(cols, rows, 1, 1))[:, 0, 0] / 255.0
    assert np.allclose(denormalised(chip.image)[:, 112, 112], expected, atol=1e-5)


def test_band_selection(naip: tuple[Path, Path]) -> None:
    false_colour = open_imagery(naip[0], bands=(4, 3, 2))
    nir = open_imagery(naip[0], bands=(4,))
    cell, crs = first_chip_cell(false_colour, 9)
    spec = chip_for_cell(cell, crs)
    a, b = denormalised(false_colour.read(spec).image), denormalised(nir.read(spec).image)
    assert np.allclose(a[0], b[0], atol=1e-6) and not np.allclose(a[1], b[1], atol=1e-2)
    for bad in [(5,), (1, 2), (0, 1, 2)]:
        with pytest.raises(GeolinkError, match="bands"):
            open_imagery(naip[0], bands=bad)


def test_float_raster_with_nan_nodata_matches_uint16(atlanta: Path, tmp_path: Path) -> None:
    as_float = tmp_path / "float.tif"
    with rasterio.open(atlanta) as dataset:
        pixels = dataset.read(1).astype(np.float32)
        pixels[pixels == 0] = np.nan
        profile = {**dataset.profile, "dtype": "float32", "nodata": np.nan}
    with rasterio.open(as_float, "w", **profile) as target:
        target.write(pixels, 1)
    cell, crs = first_chip_cell(open_imagery(atlanta), 11)
    spec = chip_for_cell(cell, crs)
    # equal up to the uint16 warp rounding to whole source units (0.5 / 857 / 0.229)
    assert np.allclose(
        open_imagery(as_float).read(spec).image, open_imagery(atlanta).read(spec).image, atol=3e-3
    )


def test_partial_and_missing_coverage(atlanta: Path) -> None:
    source = open_imagery(atlanta)
    cells = region_cells(source.footprint, 11, touching=True)
    lon, lat = cell_lonlat(cells[:1])
    crs = source.chip_crs(lon[0], lat[0])
    chips = [source.read(chip_for_cell(int(c), crs)) for c in cells]
    edge = [c for c in chips if c is not None and 0 < c.valid_fraction < 1]
    assert edge and all(np.all(c.image[:, ~c.valid] == 0) for c in edge)
    # the invalid part of an edge chip is the part outside the raster's bounds
    spec = edge[0].spec
    with rasterio.open(atlanta) as dataset:
        inside = rasterize(
            [(shapely.box(*dataset.bounds), 1)], out_shape=(224, 224), transform=spec.transform
        )
    assert (edge[0].valid == inside.astype(bool)).mean() > 0.99

    far = region_cells("-84.5,33.5,-84.49,33.51", 11)
    with pytest.raises(GeolinkError, match="misses the imagery"):
        source.covered_cells(far)
    assert source.read(chip_for_cell(int(far[0]), crs)) is None
    tally = ChipTally()
    read = list(read_chips(source, [*cells, *far[:3]], crs, min_valid=0.5, tally=tally))
    assert tally.read == len(read) and tally.no_imagery >= 3 and tally.too_sparse >= 1
    assert tally.read + tally.no_imagery + tally.too_sparse == len(cells) + 3
    assert all(chip.valid_fraction >= 0.5 for chip in read)


def split_scene(path: Path, folder: Path) -> tuple[Path, Path]:
    """The west and east halves of a raster as two GeoTIFFs (band 4 stays NIR, not the default RGBA alpha)."""
    halves = []
    with rasterio.open(path) as dataset:
        half = dataset.width // 2
        for name, window in [
            ("west", Window(0, 0, half, dataset.height)),
            ("east", Window(half, 0, dataset.width - half, dataset.height)),
        ]:
            profile = {
                **dataset.profile,
                "width": window.width,
                "transform": dataset.window_transform(window),
                "photometric": "MINISBLACK",
            }
            with rasterio.open(folder / f"{name}.tif", "w", **profile) as target:
                target.write(dataset.read(window=window))
                target.colorinterp = dataset.colorinterp
            halves.append(folder / f"{name}.tif")
    return halves[0], halves[1]


def test_mosaic_fills_holes_from_the_next_source(naip: tuple[Path, Path], tmp_path: Path) -> None:
    west, east = split_scene(naip[0], tmp_path)
    whole = open_imagery(naip[0])
    with rasterio.open(naip[0]) as dataset:
        seam = dataset.xy(dataset.height // 2, dataset.width // 2, offset="ul")  # the halves' shared edge
        (lon,), (lat,) = rasterio.warp.transform(dataset.crs, "EPSG:4326", [seam[0]], [seam[1]])
    spec = chip_for_cell(h3.str_to_int(h3.latlng_to_cell(lat, lon, 10)), whole.crs)
    filled = open_imagery([west, east]).read(spec)
    assert filled.valid.all() and filled.source == "west.tif+east.tif"
    differ = ~np.isclose(filled.image, whole.read(spec).image, atol=1e-3).all(axis=0)
    seam_column = (seam[0] - spec.bounds[0]) / spec.pixel_size
    source_pixel = 5.0 / spec.pixel_size  # NAIP pixels are 5 m
    # only the columns within a source pixel of the seam differ (each half's kernel is cut at its edge)
    assert 0 < differ.mean() < 0.05
    assert np.abs(np.nonzero(differ)[1] + 0.5 - seam_column).max() <= source_pixel + 1
    first = open_imagery([west, east], mosaic="first").read(spec)
    assert first.source == "west.tif" and 0.2 < first.valid_fraction < 0.8


def test_mosaic_priority(naip: tuple[Path, Path]) -> None:
    older, newer = open_imagery(naip[0]), open_imagery(naip[1])
    cell, crs = first_chip_cell(older, 9)
    spec = chip_for_cell(cell, crs)
    both = open_imagery([naip[1], naip[0]]).read(spec)
    assert both.source == naip[1].name and np.array_equal(both.image, newer.read(spec).image)
    assert not np.allclose(both.image, older.read(spec).image, atol=0.1)


def test_tile_folder_picks_the_finest_zoom_and_both_namings(shared_data: Path, tmp_path: Path) -> None:
    tiles = find_tiles(shared_data / "kampala_oam")
    assert {tile.z for tile in tiles} == {21} and len(tiles) == 112
    sample = kampala_sample()
    nested = tmp_path / "nested"
    for tile in find_tiles(sample.imagery):
        (nested / f"{tile.z}" / f"{tile.x}").mkdir(parents=True, exist_ok=True)
        shutil.copy(tile.path, nested / f"{tile.z}" / f"{tile.x}" / f"{tile.y}.webp")
    oam, zxy = open_imagery(sample.imagery), open_imagery(nested)
    cell, crs = first_chip_cell(oam, 12)
    spec = chip_for_cell(cell, crs)
    assert np.array_equal(oam.read(spec).image, zxy.read(spec).image)
    assert crs.to_epsg() == 3857


def test_tile_alpha_and_missing_tiles_are_invalid(tmp_path: Path) -> None:
    """Transparent pixels and absent tiles read as invalid exactly where they lie in the chip."""
    sample = kampala_sample()
    folder = tmp_path / "tiles"
    shutil.copytree(sample.imagery, folder)
    source = open_imagery(sample.imagery)
    cell, crs = first_chip_cell(source, 11)
    spec = chip_for_cell(cell, crs)
    chip_box = spec.footprint_in("EPSG:3857")
    tiles = [t for t in find_tiles(folder) if shapely.box(*tile_bounds(t.x, t.y, t.z)).within(chip_box)]
    removed, transparent = tiles[0], tiles[1]
    removed.path.unlink()
    with rasterio.open(transparent.path) as dataset:
        pixels = np.concatenate([dataset.read([1, 2, 3]), np.zeros((1, 256, 256), np.uint8)])  # alpha 0
    transparent.path.unlink()
    with rasterio.open(
        transparent.path.with_suffix(".png"), "w", driver="PNG", width=256, height=256, count=4, dtype="uint8"
    ) as target:
        target.write(pixels)
    chip = open_imagery(folder).read(spec)
    holes = gpd.GeoSeries(
        [shapely.box(*tile_bounds(t.x, t.y, t.z)) for t in (removed, transparent)], crs="EPSG:3857"
    ).to_crs(crs)
    expected = rasterize(list(holes), out_shape=(224, 224), transform=spec.transform).astype(bool)
    assert expected.mean() > 0.05
    assert (~chip.valid == expected).mean() > 0.99
    assert source.read(spec).valid.all()


def test_sources_pickle_and_reopen(naip: tuple[Path, Path]) -> None:
    sample = kampala_sample()
    for source in (open_imagery(naip[0]), open_imagery(sample.imagery)):
        cell, crs = first_chip_cell(source, 10 if source.name.endswith(".tif") else 12)
        spec = chip_for_cell(cell, crs)
        blob = pickle.dumps(source)
        assert len(blob) < 200_000
        assert np.array_equal(pickle.loads(blob).read(spec).image, source.read(spec).image)


def test_bundled_sample_is_small_and_covers_its_region() -> None:
    sample = kampala_sample()
    size = sum(p.stat().st_size for p in sample.imagery.parent.rglob("*") if p.is_file())
    assert size < 6_000_000
    buildings = gpd.read_file(sample.osm)
    assert len(buildings) > 50 and set(buildings["building"]) == {"yes"} and buildings.crs.to_epsg() == 4326
    source = open_imagery(sample.imagery)
    cells = region_cells(sample.region, sample.res)
    assert np.array_equal(source.covered_cells(cells), cells)
    crs = source.chip_crs(*(v[0] for v in cell_lonlat(cells[:1])))
    assert min(chip.valid_fraction for chip in read_chips(source, cells[::6], crs)) > 0.9
    assert "CC-BY-4.0" in sample.attribution.read_text() and "ODbL" in sample.attribution.read_text()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, a: d.joinpath("zero.tif").write_bytes(b""), "cannot open"),
        (lambda d, a: d.joinpath("text.tif").write_text("not a raster"), "cannot open"),
        (
            lambda d, a: d.joinpath("cut.tif").write_bytes(a.read_bytes()[: len(a.read_bytes()) // 2]),
            "cannot read",
        ),
    ],
    ids=["zero-byte", "not-a-raster", "truncated-uint16"],
)
def test_corrupt_rasters(atlanta: Path, tmp_path: Path, make, message: str) -> None:
    make(tmp_path, atlanta)
    with pytest.raises(GeolinkError, match=message):
        open_imagery(next(tmp_path.iterdir()))


def test_truncated_raster_fails_on_read(naip: tuple[Path, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.tif"
    cut.write_bytes(naip[0].read_bytes()[:1_200_000])
    source = open_imagery(cut)  # the header and overviews survive; the full-resolution tiles do not
    cells = region_cells(source.footprint, 9)
    with pytest.raises(GeolinkError, match="cannot read imagery cut.tif"):
        list(read_chips(source, cells, source.crs))


def test_other_bad_imagery(atlanta: Path, tmp_path: Path) -> None:
    no_crs = tmp_path / "no_crs.tif"
    with rasterio.open(atlanta) as dataset:
        profile = {**dataset.profile, "crs": None}
        with rasterio.open(no_crs, "w", **profile) as target:
            target.write(dataset.read())
    with pytest.raises(GeolinkError, match="has no CRS"):
        open_imagery(no_crs)
    with pytest.raises(GeolinkError, match="does not exist"):
        open_imagery(tmp_path / "absent.tif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeolinkError, match="no map tiles"):
        open_imagery(tmp_path / "empty")
    with pytest.raises(GeolinkError, match="no imagery given"):
        open_imagery([])
    with pytest.raises(GeolinkError, match="resampling"):
        RasterSource(atlanta, resampling="smooth")
    with pytest.raises(GeolinkError, match="mosaic mode"):
        open_imagery(atlanta, mosaic="blend")
