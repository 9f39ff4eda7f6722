"""Every region form checked alike: size from the area alone, H3 ids beyond 64 bits, the antimeridian."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from h3.api import basic_int as h3

from geolink_store.errors import GeolinkError
from geolink_store.grid import cell_lonlat, estimated_cells, region_cells
from geolink_store.regions import checked_region

FIJI = (179.999, -16.5, -179.999, -16.4982)
"""About 200 m by 200 m across the antimeridian."""


def test_a_bbox_across_the_antimeridian_covers_both_sides() -> None:
    west, south, east, north = FIJI
    checked = checked_region(f"{west},{south},{east},{north}", 12)
    cells = region_cells(checked.region, 12)
    lon, _ = cell_lonlat(cells)
    assert 50 < cells.size < 400 and (lon > 179.99).any() and (lon < -179.99).any()
    crossing = shapely.Polygon([(west, south), (east, south), (east, north), (west, north)])
    assert np.array_equal(region_cells(checked_region(crossing, 12).region, 12), cells)
    assert estimated_cells(checked.geometry, 12) == pytest.approx(cells.size, rel=0.5)


def test_cells_stay_cells_and_are_sized_by_their_children() -> None:
    cell = h3.latlng_to_cell(0.35, 32.59, 9)
    checked = checked_region(h3.int_to_str(cell), 12)
    assert checked.region.tolist() == [cell]
    assert region_cells(checked.region, 12).size == 7**3
    with pytest.raises(GeolinkError, match="would hold about"):
        checked_region(h3.int_to_str(h3.cell_to_parent(cell, 0)), 12)


@pytest.mark.parametrize("region", ["ffffffffffffffffffff", [2**64], [-5]])
def test_ids_beyond_64_bits_are_refused(region: object) -> None:
    with pytest.raises(GeolinkError, match="not a valid H3 cell id"):
        checked_region(region, 12)


def test_a_plain_bbox_with_a_negative_west_is_a_bbox() -> None:
    assert checked_region("-0.01,-0.01,0.01,0.01", 9).geometry.equals(shapely.box(-0.01, -0.01, 0.01, 0.01))
