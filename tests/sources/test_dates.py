"""Acquisition dates: from a raster's TIFF date tag, else from a NAIP-style date in its name."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from geolink_store.sources.dates import acquisition_date, name_date


def _raster(path: Path, **tags: str) -> Path:
    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": 1, "dtype": "uint8", "crs": "EPSG:32614",
               "transform": from_origin(500000, 5200000, 5, 5)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.zeros((1, 4, 4), np.uint8))
        dataset.update_tags(**tags)
    return path


def test_naip_names_carry_the_acquisition_day() -> None:
    assert name_date("m_4709963_se_14_1_20100629.tif") == date(2010, 6, 29)
    assert name_date("m_4709963_se_14_060_20200831_20201119.tif") == date(2020, 11, 19)
    assert name_date("scene_20200231.tif") is None  # no such day
    assert name_date("tile_123420200101999.tif") is None  # digits that do not stand alone
    assert name_date("ortho.tif") is None


def test_the_tiff_date_tag_wins_over_the_name(tmp_path: Path) -> None:
    tagged = _raster(tmp_path / "m_1_20100629.tif", TIFFTAG_DATETIME="2011:05:04 10:11:12")
    assert acquisition_date(str(tagged)) == date(2011, 5, 4)
    untagged = _raster(tmp_path / "m_1_20100629_b.tif")
    assert acquisition_date(str(untagged)) == date(2010, 6, 29)
    garbled = _raster(tmp_path / "plain.tif", TIFFTAG_DATETIME="yesterday")
    assert acquisition_date(str(garbled)) is None
    assert acquisition_date("<VRTDataset/>", "tiles_20190101") == date(2019, 1, 1)
