"""Geometry node features (``graph[t].geo``): values on hand-built shapes, their columns per node type, the
default graphs unchanged, augmentation consistency and the shard round trip."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
import torch
from shapely import affinity
from shapely.geometry import LineString, Point, box
from test_text import HashEncoder

from geolink_store.graphs.builder import GraphBuilder, geometry_features, scale_measure
from geolink_store.sources.osm import read_example_folder
from model.graphs import GEOMETRY_DIM, GEOMETRY_FEATURES, batch_graphs, empty_graph, has_geometry
from model.osm import EDGE_TYPES, NODE_TYPES
from training.augment import crop_geometry, crop_graph, flip_geometry, flip_graph
from training.shards import Sample, ShardReader, write_shards

CHIP = (0.0, 0.0, 10.0, 10.0)
EXAMPLES = "geolink_example/osm2graph_example"
COLUMN = {name: i for i, name in enumerate(GEOMETRY_FEATURES)}


def entities(*items: tuple[shapely.Geometry, object]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"tags": [t for _, t in items]}, geometry=[g for g, _ in items])


def features(*geoms: shapely.Geometry) -> np.ndarray:
    return geometry_features(np.array(geoms, dtype=object)).astype(np.float64)


def test_columns_are_named_once_for_every_type() -> None:
    assert len(GEOMETRY_FEATURES) == GEOMETRY_DIM == 8
    assert GEOMETRY_FEATURES[:3] == ("area", "length", "compactness")
    assert GEOMETRY_FEATURES[6:] == ("centre_x", "centre_y")


def test_square_is_compact_and_not_elongated() -> None:
    (f,) = features(box(0.1, 0.1, 0.3, 0.3))
    assert f[COLUMN["area"]] == pytest.approx(scale_measure(0.04), abs=1e-6)
    assert f[COLUMN["length"]] == pytest.approx(scale_measure(0.8), abs=1e-6)
    assert f[COLUMN["compactness"]] == pytest.approx(math.pi / 4, abs=1e-6)
    assert f[COLUMN["elongation"]] == pytest.approx(0.0, abs=1e-6)
    assert f[3:5] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert f[6:] == pytest.approx([0.2, 0.2], abs=1e-6)


def test_rectangle_orientation_and_elongation() -> None:
    along_x, along_y, rotated = features(
        box(0.1, 0.4, 0.5, 0.5), box(0.4, 0.1, 0.5, 0.5), affinity.rotate(box(0.1, 0.4, 0.5, 0.5), 30)
    )
    assert along_x[COLUMN["elongation"]] == pytest.approx(0.75, abs=1e-6)
    assert along_x[COLUMN["compactness"]] == pytest.approx(4 * math.pi * 0.04 / 1.0**2, abs=1e-6)
    assert along_x[3:5] == pytest.approx([0.75, 0.0], abs=1e-6)  # θ = 0: (cos 0, sin 0) * 0.75
    assert along_y[3:5] == pytest.approx([-0.75, 0.0], abs=1e-6)  # θ = 90°: cos 180° = -1
    assert rotated[3:5] == pytest.approx(
        [0.75 * math.cos(math.pi / 3), 0.75 * math.sin(math.pi / 3)], abs=1e-6
    )
    assert rotated[COLUMN["area"]] == pytest.approx(along_x[COLUMN["area"]], abs=1e-6)


def test_lines_bearing_and_straightness() -> None:
    diagonal, bent, ring = features(
        LineString([(0, 0), (0.5, 0.5)]),
        LineString([(0, 0), (0.5, 0), (0.5, 0.5)]),
        LineString([(0.1, 0.1), (0.2, 0.1), (0.2, 0.2), (0.1, 0.1)]),
    )
    assert diagonal[COLUMN["length"]] == pytest.approx(scale_measure(math.sqrt(0.5)), abs=1e-6)
    assert diagonal[[0, 2]] == pytest.approx([0.0, 0.0])  # area and compactness are polygons' only
    assert diagonal[3:6] == pytest.approx([0.0, 1.0, 1.0], abs=1e-6)  # θ = 45°, straight
    assert bent[COLUMN["elongation"]] == pytest.approx(math.sqrt(0.5) / 1.0, abs=1e-6)
    assert bent[3:5] == pytest.approx([0.0, math.sqrt(0.5)], abs=1e-6)
    assert bent[6:] == pytest.approx([0.375, 0.125], abs=1e-6)  # the centroid of the line
    assert ring[3:6] == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)  # closed: no bearing


def test_point_has_its_position_only() -> None:
    (f,) = features(Point(0.2, 0.7))
    assert f == pytest.approx([0, 0, 0, 0, 0, 0, 0.2, 0.7])
    assert geometry_features(np.array([], dtype=object)).shape == (0, 8)


def test_builder_fills_geo_per_type_in_the_chip_frame() -> None:
    chip = entities(
        (box(1, 1, 3, 3), {"building": "yes"}),  # frame (0.1..0.3, 0.7..0.9): y points down
        (LineString([(0, 5), (10, 5)]), {"highway": "residential"}),
        (Point(2, 8), {"amenity": "cafe"}),
    )
    graph = GraphBuilder(HashEncoder(), cache_dir=False, geometry=True).build(chip, CHIP)
    assert has_geometry(graph)
    for t in NODE_TYPES:
        assert graph[t].geo.dtype == torch.float32 and graph[t].geo.shape == (1, GEOMETRY_DIM)
    polygon, line, point = (graph[t].geo[0].double().numpy() for t in NODE_TYPES)
    assert polygon[2] == pytest.approx(math.pi / 4, abs=1e-5)
    assert polygon[6:] == pytest.approx([0.2, 0.8], abs=1e-6)
    assert line[[0, 2]] == pytest.approx([0, 0]) and line[3:6] == pytest.approx([1, 0, 1], abs=1e-6)
    assert line[COLUMN["length"]] == pytest.approx(1.0, abs=1e-6)  # across the chip
    assert point == pytest.approx([0, 0, 0, 0, 0, 0, 0.2, 0.2], abs=1e-6)
    assert graph["polygon"].geo[0, 6:].tolist() == pytest.approx(graph["polygon"].pos[0, -1].tolist())


def test_clipped_geometry_is_measured() -> None:
    """A building half outside the chip is measured as what lies inside it."""
    graph = GraphBuilder(HashEncoder(), cache_dir=False, geometry=True).build(
        entities((box(-2, 4, 2, 6), {"building": "yes"})), CHIP
    )
    (f,) = graph["polygon"].geo.double().numpy()
    assert f[0] == pytest.approx(scale_measure(0.2 * 0.2), abs=1e-6)  # 4 x 2, half inside: a square
    assert f[5] == pytest.approx(0.0, abs=1e-6) and f[6:] == pytest.approx([0.1, 0.5], abs=1e-6)


def test_geometry_off_leaves_graphs_as_they_were() -> None:
    chip = entities(
        (box(1, 1, 3, 3), {"building": "yes"}),
        (box(2, 2, 5, 4), {"building": "yes"}),
        (LineString([(0, 5), (10, 5)]), {"highway": "residential"}),
        (Point(2, 8), {"amenity": "cafe"}),
        (Point(7, 8), {"amenity": "cafe"}),
    )
    plain = GraphBuilder(HashEncoder(), cache_dir=False).build(chip, CHIP)
    with_geo = GraphBuilder(HashEncoder(), cache_dir=False, geometry=True).build(chip, CHIP)
    _assert_same_graph_but_geo(plain, with_geo)


def test_official_examples_unchanged_when_geometry_is_off(shared_data) -> None:
    plain, with_geo = (GraphBuilder(HashEncoder(), cache_dir=False, geometry=g) for g in (False, True))
    for folder in sorted((shared_data / EXAMPLES).iterdir()):
        chip = read_example_folder(folder)
        graph = plain.build(chip.entities, chip.bbox)
        _assert_same_graph_but_geo(graph, with_geo.build(chip.entities, chip.bbox))
        assert not (with_geo.build(chip.entities, chip.bbox)["polygon"].geo.isnan().any())


def _assert_same_graph_but_geo(plain, with_geo) -> None:
    assert not any("geo" in plain[t] for t in NODE_TYPES) and not has_geometry(plain)
    assert set(plain.node_types) == set(with_geo.node_types)
    for t in NODE_TYPES:
        assert set(plain[t].keys()) == {"x", "pos"}
        assert set(with_geo[t].keys()) == {"x", "pos", "geo"}
        assert torch.equal(plain[t].x, with_geo[t].x) and torch.equal(plain[t].pos, with_geo[t].pos)
        assert with_geo[t].geo.shape == (plain[t].num_nodes, GEOMETRY_DIM)
    for edge in EDGE_TYPES:
        assert torch.equal(plain[edge].edge_index, with_geo[edge].edge_index)


SHAPES = (
    box(0.1, 0.1, 0.3, 0.3),
    box(0.15, 0.4, 0.55, 0.5),
    affinity.rotate(box(0.3, 0.5, 0.7, 0.6), 25),
    shapely.Polygon([(0.6, 0.1), (0.9, 0.15), (0.7, 0.35)]),
    LineString([(0.05, 0.95), (0.4, 0.7), (0.45, 0.9)]),
    LineString([(0.6, 0.6), (0.9, 0.8)]),
    Point(0.25, 0.85),
    Point(0.8, 0.5),
    shapely.Polygon(
        [(0.55, 0.55), (0.95, 0.55), (0.95, 0.7), (0.55, 0.7)], [[(0.6, 0.6), (0.7, 0.6), (0.7, 0.65)]]
    ),
)


def test_holes_subtract_from_the_moments() -> None:
    framed = shapely.Polygon([(0, 0), (0.4, 0), (0.4, 0.4), (0, 0.4)], [[(0.1, 0.1), (0.3, 0.1), (0.3, 0.3)]])
    square_ring = box(0, 0, 0.4, 0.4).difference(box(0.1, 0.1, 0.3, 0.3))
    f, ring = features(framed, square_ring)
    assert f[COLUMN["area"]] == pytest.approx(scale_measure(0.16 - 0.02), abs=1e-6)
    assert ring[COLUMN["elongation"]] == pytest.approx(0.0, abs=1e-6)  # symmetric: no axis
    assert 0 < f[COLUMN["elongation"]] < 0.5


def test_flip_transform_equals_features_of_the_mirrored_geometry() -> None:
    geoms = np.array(SHAPES, dtype=object)
    mirrored = shapely.transform(geoms, lambda xy: np.stack([1.0 - xy[:, 0], xy[:, 1]], axis=1))
    expected = geometry_features(mirrored)
    got = flip_geometry(torch.from_numpy(geometry_features(geoms)))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(flip_geometry(got).numpy(), geometry_features(geoms), atol=1e-6)


def test_square_crop_transform_equals_features_of_the_cropped_frame() -> None:
    """A crop of equal width and height is a similarity: exact for nodes wholly inside it."""
    box_ = (0.05, 0.05, 0.95, 0.95)
    geoms = np.array(SHAPES, dtype=object)
    x0, y0, x1, y1 = box_
    moved = shapely.transform(geoms, lambda xy: (xy - [x0, y0]) / [x1 - x0, y1 - y0])
    got = crop_geometry(torch.from_numpy(geometry_features(geoms)), box_)
    np.testing.assert_allclose(got.numpy(), geometry_features(moved), atol=1e-5)


def test_stretching_crop_maps_centre_area_and_axis() -> None:
    box_ = (0.0, 0.0, 0.5, 1.0)  # stretched 2x along x
    rect = box(0.1, 0.4, 0.3, 0.6)  # a square: becomes 0.4 x 0.2, long along x
    stretched = shapely.transform(rect, lambda xy: xy / [0.5, 1.0])
    got = crop_geometry(torch.from_numpy(features(rect)).float(), box_).double().numpy()[0]
    want = features(stretched)[0]
    assert got[[0, 6, 7]] == pytest.approx(want[[0, 6, 7]], abs=1e-5)  # area and centre are exact
    diagonal = LineString([(0.1, 0.1), (0.2, 0.2)])  # 45° -> atan2(1, 2) after the stretch
    got = crop_geometry(torch.from_numpy(features(diagonal)).float(), box_).double().numpy()[0]
    assert got[3:5] == pytest.approx(
        features(shapely.transform(diagonal, lambda xy: xy / [0.5, 1.0]))[0, 3:5]
    )


def test_graph_augmentations_carry_geo() -> None:
    chip = entities(
        *[(shapely.transform(g, lambda xy: xy * [10, -10] + [0, 10]), {"b": "y"}) for g in SHAPES]
    )
    graph = GraphBuilder(HashEncoder(), cache_dir=False, geometry=True).build(chip, CHIP)
    flipped = flip_graph(graph)
    for t in NODE_TYPES:
        assert torch.allclose(flipped[t].geo, flip_geometry(graph[t].geo))
        assert torch.allclose(flipped[t].geo[:, 6], flipped[t].pos[:, -1, 0], atol=1e-5) or t != "point"
        assert torch.equal(graph[t].geo, flip_graph(flipped)[t].geo) or torch.allclose(
            graph[t].geo, flip_graph(flipped)[t].geo
        )
    cropped = crop_graph(graph, (0.0, 0.0, 0.5, 0.5))
    for t in NODE_TYPES:
        assert cropped[t].geo.shape == (cropped[t].num_nodes, GEOMETRY_DIM)
        assert ((cropped[t].geo[:, 6:] >= 0) & (cropped[t].geo[:, 6:] <= 1)).all()
    plain = GraphBuilder(HashEncoder(), cache_dir=False).build(chip, CHIP)
    assert not has_geometry(flip_graph(plain)) and not has_geometry(crop_graph(plain, (0, 0, 0.5, 0.5)))


def test_batching_keeps_or_drops_geo() -> None:
    chip = entities((box(1, 1, 3, 3), {"building": "yes"}), (Point(2, 8), {"amenity": "cafe"}))
    with_geo = GraphBuilder(HashEncoder(), cache_dir=False, geometry=True).build(chip, CHIP)
    plain = GraphBuilder(HashEncoder(), cache_dir=False).build(chip, CHIP)
    empty = empty_graph(8, geometry=True)
    assert empty["line"].geo.shape == (0, GEOMETRY_DIM) and "geo" not in empty_graph(8)["line"]
    batch = batch_graphs([with_geo, empty, with_geo])
    assert batch["polygon"].geo.shape == (2, GEOMETRY_DIM)
    assert "geo" not in batch_graphs([with_geo, plain])["polygon"]  # not every graph has it
    assert "geo" not in batch_graphs([with_geo], geometry=False)["polygon"]
    from model.errors import InputError

    with pytest.raises(InputError, match=r"graphs \[1\] lack geometry features"):
        batch_graphs([with_geo, plain], geometry=True)


def test_shards_round_trip_geo_and_read_old_shards(tmp_path) -> None:
    chip = entities(
        *[(shapely.transform(g, lambda xy: xy * [10, -10] + [0, 10]), {"b": "y"}) for g in SHAPES]
    )
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    with_geo = GraphBuilder(HashEncoder(), cache_dir=False, geometry=True).build(chip, CHIP)
    plain = GraphBuilder(HashEncoder(), cache_dir=False).build(chip, CHIP)
    samples = [Sample(image, with_geo), Sample(image, empty_graph(8, geometry=True)), Sample(image, with_geo)]
    (path,) = write_shards(samples, tmp_path / "geo")
    reader = ShardReader(path)
    assert reader.geometry
    for sample, read in zip(samples, reader, strict=True):
        for t in NODE_TYPES:
            assert torch.equal(read.graph[t].geo, sample.graph[t].geo)
    (old,) = write_shards([Sample(image, plain)], tmp_path / "old")
    read = ShardReader(old)[0]
    assert not ShardReader(old).geometry and not any("geo" in read.graph[t] for t in NODE_TYPES)
    from model.errors import InputError

    with pytest.raises(InputError, match="1 of 2 samples lack the geometry features"):
        write_shards([Sample(image, with_geo), Sample(image, plain)], tmp_path / "mixed")
