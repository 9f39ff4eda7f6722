"""The bundled real sample region (Kampala aerial tiles, OSM buildings) for the demo and fresh-clone tests."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

SAMPLE_ROOT = Path(str(files("geolink_store") / "data" / "kampala"))


@dataclass(frozen=True)
class SampleRegion:
    """Paths and settings of a bundled sample region.

    Attributes:
        imagery: a folder of slippy-map tiles (open with ``open_imagery``).
        osm: a GeoJSON of OSM features (EPSG:4326, one column per tag).
        bbox: (west, south, east, north) in degrees, inside the imagery.
        res: recommended H3 resolution of the cells.
        fine_res: recommended H3 resolution of the patch (child) cells.
        attribution: the licence notice to show with any output.
    """

    imagery: Path
    osm: Path
    bbox: tuple[float, float, float, float]
    res: int
    fine_res: int
    attribution: Path

    @property
    def region(self) -> str:
        """The bbox as a ``W,S,E,N`` region string."""
        return ",".join(f"{value:.7f}" for value in self.bbox)


def kampala_sample() -> SampleRegion:
    """Kampala, Uganda: 96 OpenAerialMap zoom-21 tiles (~0.075 m/pixel, 230 x 150 m) and 108 OSM buildings.

    Resolution 12 gives cells about 20 m across (~0.09 m per chip pixel, close to the imagery's own): 72 cells
    whose chips lie (>= 97 %) inside the imagery; their resolution-13 children are the patch cells.
    """
    return SampleRegion(
        imagery=SAMPLE_ROOT / "tiles",
        osm=SAMPLE_ROOT / "buildings.geojson",
        bbox=(32.5938, 0.3503, 32.5956, 0.3514),
        res=12,
        fine_res=13,
        attribution=SAMPLE_ROOT / "ATTRIBUTION.md",
    )
