"""When imagery was taken, where the file says so: its TIFF date tag, else a date in its name (NAIP style).

NAIP quarter-quads are named ``m_4709963_se_14_1_20100629.tif`` (the last field: the acquisition day); GDAL
exposes the TIFF ``DateTime`` tag as ``TIFFTAG_DATETIME`` (``YYYY:MM:DD HH:MM:SS``). The tag wins over the
name when both are present and valid.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

_NAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?!\d)")
_TAG_NAMES = ("TIFFTAG_DATETIME", "ACQUISITIONDATETIME", "ACQUISITION_DATE", "DATE_ACQUIRED")


def acquisition_date(path: str, name: str | None = None) -> date | None:
    """The day a raster file or tile folder was acquired, or None when nothing says it.

    Args:
        path: the file (its date tag is read) or folder.
        name: the name to look for a date in (default: the path's last part).
    """
    return _tag_date(path) or name_date(name or Path(path).name)


def name_date(name: str) -> date | None:
    """The last valid ``YYYYMMDD`` date standing alone in ``name``, if any."""
    for match in reversed(list(_NAME_DATE.finditer(name))):
        try:
            return date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:  # 20200231
            continue
    return None


def _tag_date(path: str) -> date | None:
    if path.lstrip().startswith("<") or not Path(path).is_file():  # VRT XML text (a tile folder's mosaic)
        return None
    try:
        with rasterio.open(path) as dataset:
            tags = dataset.tags()
    except RasterioError:
        return None
    for name in _TAG_NAMES:
        day = tags.get(name, "").strip()[:10].replace(":", "-")  # 2010:06:29 12:00:00 or ISO 8601
        try:
            return date.fromisoformat(day)
        except ValueError:
            continue
    return None
