"""Regions to H3 cells: bbox, vector files in any CRS, cell lists; hexagons, parents, children; bad input."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import pytest
import shapely

from geolink_store.errors import GeolinkError
from geolink_store.grid import (
    as_cells,
    cell_geometries,
    cell_lonlat,
    children,
    parents,
    region_cells,
    region_geometry,
)

BBOX = (32.5937, 0.3502, 32.5958, 0.3516)  # Kampala, about 230 x 155 m
BBOX_TEXT = ",".join(map(str, BBOX))


def test_bbox_cells_have_their_centres_inside() -> None:
    cells = region_cells(BBOX_TEXT, 12)
    assert cells.dtype == np.int64 and np.all(np.diff(cells) > 0)
    assert all(h3.get_resolution(h3.int_to_str(int(c))) == 12 for c in cells)
    lon, lat = cell_lonlat(cells)
    assert shapely.contains_xy(shapely.box(*BBOX), lon, lat).all()
    # ~36,000 m2 over ~307 m2 per res-12 cell
    assert 90 <= len(cells) <= 140


def test_touching_adds_the_cells_on_the_edge() -> None:
    centred = region_cells(BBOX_TEXT, 12)
    touching = region_cells(BBOX_TEXT, 12, touching=True)
    assert set(centred) < set(touching)
    assert shapely.intersects(cell_geometries(touching), shapely.box(*BBOX)).all()
    lon, lat = cell_lonlat(np.setdiff1d(touching, centred))
    assert not shapely.contains_xy(shapely.box(*BBOX), lon, lat).any()


def test_region_too_small_for_a_cell_centre() -> None:
    tiny = "32.59400,0.35000,32.59401,0.35001"
    with pytest.raises(GeolinkError, match="no H3 cell centre"):
        region_cells(tiny, 9)
    assert len(region_cells(tiny, 9, touching=True)) == 1


@pytest.mark.parametrize("name", ["region.geojson", "region.gpkg", "region.parquet"])
def test_vector_file_in_any_crs(tmp_path: Path, name: str) -> None:
    square = shapely.box(453_000, 38_600, 453_250, 38_800)  # metres in UTM 36N (EPSG:32636)
    frame = gpd.GeoDataFrame({"name": ["a"]}, geometry=[square], crs="EPSG:32636")
    path = tmp_path / name
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_file(path)
    in_lonlat = frame.to_crs("EPSG:4326").geometry[0]
    cells = region_cells(path, 12)
    assert np.array_equal(cells, region_cells(str(path), 12))
    assert np.array_equal(cells, region_cells(in_lonlat, 12))
    lon, lat = cell_lonlat(cells)
    assert shapely.contains_xy(in_lonlat, lon, lat).all() and len(cells) > 100
    assert region_geometry(path).equals_exact(in_lonlat, 1e-9)


def test_cell_lists_in_any_form_and_resolution() -> None:
    cells = region_cells(BBOX_TEXT, 12)[:5]
    hex_ids = [h3.int_to_str(int(c)) for c in cells]
    for given in (list(cells), hex_ids, ",".join(hex_ids), " ".join(hex_ids)):
        assert np.array_equal(region_cells(given, 12), np.sort(cells))
    assert np.array_equal(region_cells(hex_ids, 11), np.unique(parents(cells, 11)))
    assert np.array_equal(region_cells(hex_ids, 13), np.sort(children(cells, 13)))
    assert shapely.equals(region_geometry(",".join(hex_ids)), shapely.union_all(cell_geometries(cells)))


def test_hexagons_parents_children() -> None:
    cells = region_cells(BBOX_TEXT, 12)
    hexagons = cell_geometries(cells)
    lon, lat = cell_lonlat(cells)
    assert all(len(h.exterior.coords) == 7 for h in hexagons)  # 6 vertices, closed
    assert shapely.contains_xy(hexagons, lon, lat).all()
    assert shapely.intersection_all(hexagons[:2]).area < 1e-15  # neighbours share an edge, no area
    assert np.isclose(lat[0], h3.cell_to_latlng(h3.int_to_str(int(cells[0])))[0])

    up = parents(cells, 10)
    assert up.dtype == np.int64 and len(up) == len(cells)
    assert all(
        h3.cell_to_parent(h3.int_to_str(int(c)), 10) == h3.int_to_str(int(p))
        for c, p in zip(cells, up, strict=True)
    )
    assert np.array_equal(parents(cells, 12), cells)

    down = children(cells[:3], 14)
    assert len(down) == 3 * 49 and down.dtype == np.int64
    assert np.array_equal(parents(down, 12), np.repeat(cells[:3], 49))


@pytest.mark.parametrize("res", [16, -1, 2.5, "9", True, None])
def test_resolution_outside_0_to_15(res: object) -> None:
    with pytest.raises(GeolinkError, match="0 to 15"):
        region_cells(BBOX_TEXT, res)


def test_hierarchy_direction_is_checked() -> None:
    cells = region_cells(BBOX_TEXT, 12)[:2]
    with pytest.raises(GeolinkError, match="parent resolution 13"):
        parents(cells, 13)
    with pytest.raises(GeolinkError, match="fine resolution 11"):
        children(cells, 11)
    with pytest.raises(GeolinkError, match="0 to 15"):
        children(cells, 16)


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ("1,2,3", "neither"),
        ("kampala", "neither"),
        ("10,5,5,6", "W < E"),
        ("0,95,1,96", "S < N"),
        ("missing.geojson", "does not exist"),
        ([123, 456], "not a valid H3 cell"),
        (["89283082803ffff", "zz"], "not a valid H3 cell"),
        ("f" * 20, "not a valid H3 cell id .an H3 id is an unsigned 64-bit"),
        ([2**64, 1], "not a valid H3 cell id"),
        ([-5], "not a valid H3 cell id"),
        (shapely.Point(32.59, 0.35), "holds no polygon"),
    ],
)
def test_bad_regions(region: object, message: str) -> None:
    with pytest.raises(GeolinkError, match=message):
        region_cells(region, 9)


def test_bad_region_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.geojson"
    junk.write_text("{not json")
    with pytest.raises(GeolinkError, match="cannot read region file"):
        region_cells(junk, 9)
    points = tmp_path / "points.geojson"
    gpd.GeoDataFrame(geometry=[shapely.Point(32.59, 0.35)], crs="EPSG:4326").to_file(points)
    with pytest.raises(GeolinkError, match="holds no polygon"):
        region_cells(points, 9)
    no_crs = tmp_path / "no_crs.gpkg"
    with pytest.warns(UserWarning, match="crs"):
        gpd.GeoDataFrame(geometry=[shapely.box(*BBOX)]).to_file(no_crs)
    with pytest.raises(GeolinkError, match="no CRS"):
        region_cells(no_crs, 9)
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(GeolinkError, match="no features"):
        region_cells(empty, 9)


def test_mixed_resolutions_are_refused() -> None:
    cells = [int(region_cells(BBOX_TEXT, 12)[0]), int(region_cells(BBOX_TEXT, 11, touching=True)[0])]
    with pytest.raises(GeolinkError, match="mix H3 resolutions"):
        region_cells(cells, 12)
    assert as_cells(cells).dtype == np.int64


# ---- element-wise forms (the H3 functions of SQL sessions), checked against h3-py row by row ----

from geolink_store import grid  # noqa: E402 (the element-wise forms, by module)

SOME_CELLS = grid.children(grid.disk(grid.points_to_cells([32.58], [0.32], 6)[0], 1), 9)


def test_hex_ids_round_trip_as_h3_does() -> None:
    import pyarrow as pa

    odd = np.array([0, 1, 2**62, 12345, -7], dtype=np.int64)
    text = grid.hex_id_array(np.concatenate([SOME_CELLS, odd])).to_pylist()
    assert text[: len(SOME_CELLS)] == [h3.int_to_str(int(c)) for c in SOME_CELLS]
    assert text[len(SOME_CELLS) :] == ["0", "1", "4000000000000000", "3039", None]
    back = grid.cells_from_hex_array(
        pa.array([*text[: len(SOME_CELLS)], "8C2A", "zz", "", "1" * 17, None, "é"])
    )
    assert back[: len(SOME_CELLS)].tolist() == SOME_CELLS.tolist()
    assert back[len(SOME_CELLS) :].tolist() == [0x8C2A, -1, -1, -1, -1, -1]
    sliced = pa.array(text[:10]).slice(3, 4)  # an Arrow slice starts past its buffers' start
    assert grid.cells_from_hex_array(sliced).tolist() == SOME_CELLS[3:7].tolist()


def test_parents_resolutions_and_validity_element_wise() -> None:
    res = np.arange(len(SOME_CELLS)) % 10
    expected = [
        h3.cell_to_parent(h3.int_to_str(int(c)), int(r)) for c, r in zip(SOME_CELLS, res, strict=True)
    ]
    assert grid.hex_id_array(grid.parents_at(SOME_CELLS, res)).to_pylist() == expected
    assert (
        grid.parents_at(np.array([SOME_CELLS[0], 5, SOME_CELLS[0]]), np.array([10, 1, -1])).tolist()
        == [-1] * 3
    )
    assert grid.resolutions(SOME_CELLS).tolist() == [9] * len(SOME_CELLS)
    assert grid.valid_cells(np.array([SOME_CELLS[0], 0, -1, 7])).tolist() == [True, False, False, False]


def test_points_children_disks_and_boundaries_element_wise() -> None:
    lon, lat = cell_lonlat(SOME_CELLS[:50])
    found = grid.latlng_cells(
        np.append(lat, [np.nan, 91.0, 0.0]), np.append(lon, [0.0, 0.0, 0.0]), [9] * 52 + [16]
    )
    assert found[:50].tolist() == SOME_CELLS[:50].tolist() and found[50:].tolist() == [-1, -1, -1]
    offsets, values, ok = grid.children_lists(
        np.array([SOME_CELLS[0], 5, SOME_CELLS[1]]), np.array([11, 11, 8])
    )
    assert ok.tolist() == [True, False, False] and offsets.tolist() == [0, 49, 49, 49]
    assert sorted(values.tolist()) == sorted(children([SOME_CELLS[0]], 11).tolist())
    offsets, values, ok = grid.disk_lists(SOME_CELLS[:3], np.array([0, 1, 2]))
    assert offsets.tolist() == [0, 1, 8, 27] and ok.all()
    assert sorted(values[8:].tolist()) == sorted(grid.disk(SOME_CELLS[2], 2).tolist())
    with pytest.raises(GeolinkError, match="limit"):
        grid.children_lists(SOME_CELLS, 15)
    polygons = grid.boundary_polygons(np.array([SOME_CELLS[0], 3]))
    assert polygons[0].equals(cell_geometries([SOME_CELLS[0]])[0]) and polygons[1] is None


def test_cell_shares_add_up_to_the_polygon_area() -> None:
    zone = shapely.Point(32.58, 0.32).buffer(0.02)
    cells, shares = grid.cell_shares(zone, 9)
    areas = shapely.area(cell_geometries(cells))
    assert 0 < shares.min() and shares.max() == 1 and len(np.unique(cells)) == len(cells)
    assert abs((shares * areas).sum() - zone.area) / zone.area < 1e-9
    inside = shares == 1
    assert shapely.contains(zone, cell_geometries(cells[inside])).all()
    assert len(grid.cell_shares(shapely.LineString([(0, 0), (1, 1)]), 9)[0]) == 0


def _monaco_quarters(shared_data: Path) -> shapely.Geometry:
    """Monaco's six quarters (OSM admin_level 10) unioned: a real city boundary of 563 vertices."""
    boundaries = gpd.read_file(shared_data / "osm" / "monaco.osm.pbf", layer="multipolygons")
    quarters = boundaries[boundaries["admin_level"] == "10"]
    assert len(quarters) == 6
    return shapely.union_all(quarters.geometry.values)


@pytest.mark.parametrize("res", [11, 12, 13])
@pytest.mark.parametrize("touching", [False, True])
def test_irregular_city_boundary_gives_h3s_own_cells(shared_data: Path, res: int, touching: bool) -> None:
    """The hierarchical fill keeps exactly the cells H3's own fill keeps, by centre and by touching."""
    geometry = _monaco_quarters(shared_data)
    expected = h3.h3shape_to_cells_experimental(
        h3.geo_to_h3shape(geometry), res, contain="overlap" if touching else "center"
    )
    cells = region_cells(geometry, res, touching=touching)
    assert cells.size > 100
    np.testing.assert_array_equal(cells, np.sort(np.array([h3.str_to_int(c) for c in expected])))


@pytest.mark.parametrize("touching", [False, True])
def test_berlin_boundary_gives_h3s_own_cells(touching: bool) -> None:
    """Berlin's city boundary (5,395 vertices, bundled with the benchmarks) at res 9: ~9,000 cells."""
    berlin = gpd.read_file(Path(__file__).parents[1] / "bench" / "data" / "berlin.geojson").geometry.iloc[0]
    expected = h3.h3shape_to_cells_experimental(
        h3.geo_to_h3shape(berlin), 9, contain="overlap" if touching else "center"
    )
    cells = region_cells(berlin, 9, touching=touching)
    assert cells.size > 8_000
    np.testing.assert_array_equal(cells, np.sort(np.array([h3.str_to_int(c) for c in expected])))


@pytest.mark.parametrize("touching", [False, True])
def test_box_and_atlanta_buildings_give_h3s_own_cells(shared_data: Path, touching: bool) -> None:
    """A plain box and a union of real building outlines (many small parts, holes between them)."""
    buildings = gpd.read_file(shared_data / "atlanta_spacenet" / "geotiff_labels.geojson").to_crs(4326)
    for geometry, res in (
        (shapely.box(32.4, 0.1, 32.6, 0.3), 10),
        (shapely.union_all(buildings.geometry), 14),
    ):
        expected = h3.h3shape_to_cells_experimental(
            h3.geo_to_h3shape(geometry), res, contain="overlap" if touching else "center"
        )
        np.testing.assert_array_equal(
            region_cells(geometry, res, touching=touching),
            np.sort(np.array([h3.str_to_int(c) for c in expected])),
        )
