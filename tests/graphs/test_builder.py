"""GraphBuilder: node and edge structure on the official examples and hand-built chips, positions, tag
features."""

from __future__ import annotations

import math

import geopandas as gpd
import h3
import numpy as np
import pytest
import shapely
import torch
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box
from test_text import HashEncoder

from geolink_store.chips import chip_for_cell, local_utm
from geolink_store.errors import GeolinkError
from geolink_store.graphs.builder import RELATIONS, GraphBuilder, TagWeights, classify_relations
from geolink_store.sources.osm import OSMIndex, read_example_folder, read_osm
from model.graphs import batch_graphs
from model.osm import EDGE_TYPES, NODE_TYPES, POINTS_PER_NODE

EXAMPLES = "geolink_example/osm2graph_example"
CHIP = (0.0, 0.0, 10.0, 10.0)

# Node and edge counts of the official graphs of the 5 examples (geolink-method.md, CPU test plan).
OFFICIAL = {
    "a1085095888_S2_20": ((10, 0, 0), {("polygon", "polygon"): 18}),
    "a472140250_FI_21": (
        (8, 9, 1),
        {
            ("polygon", "polygon"): 28,
            ("line", "line"): 19,
            ("line", "polygon"): 23,
            ("point", "point"): 1,
            ("point", "polygon"): 2,
        },
    ),
    "a702502933_US_21": (
        (36, 6, 9),
        {
            ("polygon", "polygon"): 134,
            ("line", "line"): 18,
            ("line", "polygon"): 8,
            ("point", "point"): 45,
            ("point", "polygon"): 18,
        },
    ),
    "n4503852781_DE_": (
        (15, 1, 4),
        {("polygon", "polygon"): 51, ("line", "line"): 1, ("point", "point"): 14, ("point", "polygon"): 2},
    ),
    "w221548378_US_21": (
        (12, 7, 0),
        {("polygon", "polygon"): 28, ("line", "line"): 15, ("line", "polygon"): 11},
    ),
}


def entities(*items: tuple[shapely.Geometry, object], crs: str | None = None) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"tags": [t for _, t in items]}, geometry=[g for g, _ in items], crs=crs)


def edges(graph, src: str, dst: str) -> set[tuple[int, int]]:
    return set(map(tuple, graph[(src, "to", dst)].edge_index.T.tolist()))


def relations(graph, src: str, dst: str) -> dict[tuple[int, int], str]:
    store = graph[(src, "to", dst)]
    return {
        tuple(pair): RELATIONS[int(r)]
        for pair, r in zip(store.edge_index.T.tolist(), store.edge_attr.argmax(1), strict=True)
    }


@pytest.fixture
def builder(tmp_path) -> GraphBuilder:
    return GraphBuilder(HashEncoder(), cache_dir=tmp_path, relation_attrs=True)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_examples_give_the_official_node_and_edge_counts(shared_data, builder, name) -> None:
    chip = read_example_folder(shared_data / EXAMPLES / name)
    graph = builder.build(chip.entities, chip.bbox)
    counts, edge_counts = OFFICIAL[name]
    assert tuple(graph[t].num_nodes for t in NODE_TYPES) == counts
    for src, _, dst in EDGE_TYPES:
        expected = edge_counts.get((src, dst), edge_counts.get((dst, src), 0))
        assert graph[(src, "to", dst)].edge_index.shape[1] == expected, (src, dst)
    for t in NODE_TYPES:
        assert graph[t].x.dtype == torch.float32 and graph[t].x.shape == (counts[NODE_TYPES.index(t)], 8)
        assert graph[t].pos.shape == (counts[NODE_TYPES.index(t)], POINTS_PER_NODE[t], 2)
        assert graph[t].pos.numel() == 0 or (graph[t].pos.min() >= 0 and graph[t].pos.max() <= 1)


def test_relation_labels_agree_with_shapely_predicates(shared_data) -> None:
    """The one-relate-per-pair classification gives what shapely's predicates give, in RELATIONS priority."""
    geoms = []
    for name in OFFICIAL:
        chip = read_example_folder(shared_data / EXAMPLES / name)
        geoms.extend(shapely.clip_by_rect(chip.entities.geometry.values, *chip.bbox))
    geoms += [
        box(0, 0, 2, 2),
        box(0, 0, 2, 2),
        box(2, 0, 4, 2),
        box(1, 1, 3, 3),
        LineString([(-1, 1), (5, 1)]),
        LineString([(0, 0), (2, 0)]),
        LineString([(1, -1), (1, 3)]),
        Point(1, 1),
        Point(0, 1),
    ]
    geoms = np.array([g for g in geoms if not g.is_empty], dtype=object)
    a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    got = classify_relations(shapely.relate(geoms[a], geoms[b]), shapely.get_dimensions(geoms[a]),
                             shapely.get_dimensions(geoms[b]))  # fmt: skip
    order = ["equals", "touches", "covers", "covered_by", "overlaps", "crosses"]
    expected = np.full(len(a), RELATIONS.index("intersects"))
    for name in reversed(order):
        expected[getattr(shapely, name)(geoms[a], geoms[b])] = RELATIONS.index(name)
    np.testing.assert_array_equal(got, expected)
    assert set(RELATIONS[i] for i in got) >= {
        "equals",
        "touches",
        "covers",
        "covered_by",
        "overlaps",
        "crosses",
    }


def test_relations_on_a_hand_built_chip(builder) -> None:
    """Shapely predicates, not the official DE-9IM regexes: identical polygons are `equals` (the official
    pattern for `covers` catches them first), crossing lines are linked, and a point on an edge `touches`
    it."""
    graph = builder.build(
        entities(
            (box(1, 1, 4, 4), "building:yes"),
            (box(1, 1, 4, 4), "roof:shape:flat"),
            (box(4, 1, 6, 3), "building:yes"),  # touches the first two
            (box(0, 5, 9, 9), "landuse:grass"),
            (box(2, 6, 3, 7), "leisure:pitch"),  # inside the grass
            (LineString([(0, 2), (8, 2)]), "highway:service"),  # crosses the buildings
            (LineString([(5, 0), (5, 9)]), "highway:path"),  # crosses the service road
            (Point(2, 6.5), "amenity:bench"),  # on the pitch's edge
            (Point(7, 8), "amenity:bench"),
        ),
        CHIP,
    )
    pp = relations(graph, "polygon", "polygon")
    assert pp[(0, 1)] == pp[(1, 0)] == "equals"
    assert pp[(0, 2)] == "touches" and pp[(3, 4)] == "covers" and pp[(4, 3)] == "covered_by"
    assert all(pp[(i, i)] == "self" for i in range(5)) and (0, 3) not in pp
    assert relations(graph, "line", "line")[(0, 1)] == "crosses"
    assert relations(graph, "line", "polygon")[(0, 0)] == "crosses"
    assert relations(graph, "polygon", "line")[(0, 0)] == "crosses"
    assert relations(graph, "point", "polygon") == {
        (0, 3): "covered_by",
        (0, 4): "touches",
        (1, 3): "covered_by",
    }
    assert relations(graph, "polygon", "point")[(3, 0)] == "covers"
    assert edges(graph, "point", "point") == {(0, 0), (1, 1), (0, 1), (1, 0)}


@pytest.mark.parametrize("count", [2, 3, 4])
def test_few_points_are_triangulated(builder, count) -> None:
    """On purpose unlike the official (self-loops only up to 3 points): 2 or 3 points are linked like any
    others."""
    points = [(Point(1 + i, 1 + (i * i) % 3), "amenity:bench") for i in range(count)]
    graph = builder.build(entities(*points), CHIP)
    pairs = edges(graph, "point", "point")
    assert {(i, i) for i in range(count)} <= pairs
    assert len(pairs) == count + 2 * (3 * count - 3 - count if count > 3 else {2: 1, 3: 3}[count])


def test_collinear_points_form_a_path(builder) -> None:
    graph = builder.build(entities(*[(Point(x, 5), "highway:street_lamp") for x in (3, 1, 2, 4)]), CHIP)
    assert edges(graph, "point", "point") - {(i, i) for i in range(4)} == {
        (1, 2),
        (2, 1),
        (2, 0),
        (0, 2),
        (0, 3),
        (3, 0),
    }


def test_clipping_splitting_and_repair(builder) -> None:
    bowtie = Polygon([(1, 1), (3, 3), (3, 1), (1, 3)])  # self-intersecting
    graph = builder.build(
        entities(
            (box(8, 8, 12, 12), "building:yes"),  # crosses the chip's corner: clipped
            (MultiPolygon([box(1, 5, 2, 6), box(3, 5, 4, 6)]), "building:house"),  # two parts, two nodes
            (box(10, 0, 12, 5), "landuse:farmland"),  # touches the chip's edge only: nothing left
            (bowtie, "building:yes"),  # repaired into two triangles
            (LineString([(5, 5), (15, 5)]), "highway:primary"),
            (Point(20, 20), "amenity:bench"),  # outside
        ),
        CHIP,
    )
    assert graph["polygon"].num_nodes == 5 and graph["line"].num_nodes == 1 and graph["point"].num_nodes == 0
    assert builder.stats.repaired == 1
    np.testing.assert_allclose(
        graph["polygon"].pos[0, 3], [0.9, 0.1], atol=1e-6
    )  # centroid of the clipped 2x2
    np.testing.assert_allclose(graph["line"].pos[0].numpy(), [[0.75, 0.5], [0.5, 0.5], [1.0, 0.5]], atol=1e-6)
    np.testing.assert_array_equal(graph["polygon"].x[1], graph["polygon"].x[2])  # the parts share their tags


def test_positions_are_deterministic_inside_and_in_the_chip_frame(builder) -> None:
    """Polygon points lie inside their polygon, even a C-shape whose centroid falls outside it."""
    c_shape = Polygon([(1, 1), (9, 1), (9, 3), (3, 3), (3, 7), (9, 7), (9, 9), (1, 9)])
    items = [(c_shape, "building:yes"), (box(6, 4, 8, 6), "building:yes")]
    graph = builder.build(entities(*items), CHIP)
    again = GraphBuilder(HashEncoder(), cache_dir=False).build(entities(*items), CHIP)
    torch.testing.assert_close(graph["polygon"].pos, again["polygon"].pos)
    pos = graph["polygon"].pos.numpy().astype(float)
    frame = np.column_stack(
        [pos[..., 0].ravel() * 10, (1 - pos[..., 1].ravel()) * 10]
    )  # back to chip coordinates
    owners = np.repeat([0, 1], 4)
    polygons = np.array([c_shape, box(6, 4, 8, 6)])
    assert shapely.contains_xy(polygons[owners], frame[:, 0], frame[:, 1]).all()
    assert len(np.unique(pos[1], axis=0)) == 4  # three distinct ray points around the anchor


def test_positions_match_the_chip_pixel_frame() -> None:
    """A node lands where ChipSpec.to_chip_frame (and so the chip's pixel grid) puts it."""
    crs = local_utm(24.94, 60.17)
    chip = chip_for_cell(0x8A089968A2E7FFF, crs)
    west, south, east, north = chip.bounds
    spot = Point(west + 0.3 * (east - west), north - 0.8 * (north - south))
    graph = GraphBuilder(HashEncoder(), cache_dir=False).build(
        entities((spot, "amenity:cafe"), crs=crs), chip
    )
    expected = shapely.get_coordinates(chip.to_chip_frame(spot))[0]
    np.testing.assert_allclose(graph["point"].pos[0, 0].numpy(), expected, atol=1e-6)
    col, row = ~chip.transform @ (spot.x, spot.y)
    np.testing.assert_allclose(expected * chip.size, [col, row], atol=1e-6)


def test_tag_features_are_log_frequency_weighted_means(tmp_path) -> None:
    encoder = HashEncoder()
    weights = TagWeights({"building": math.e**2, "roof shape": math.e})
    builder = GraphBuilder(encoder, cache_dir=tmp_path, tag_weights=weights)
    graph = builder.build(
        entities(
            (Point(1, 1), {"building": "yes", "roof:shape": "flat", "name": "Unknown key"}),
            (Point(2, 2), {"name": "Only unknown", "colour": "red"}),
            (Point(3, 3), {}),
        ),
        CHIP,
    )
    embed = {
        t: v
        for t, v in zip(
            ["building:building", "roof shape:flat", "name:Only unknown", "colour:red"],
            encoder.encode(["building:building", "roof shape:flat", "name:Only unknown", "colour:red"]),
            strict=True,
        )
    }
    x = graph["point"].x.numpy()
    np.testing.assert_allclose(
        x[0], (2 * embed["building:building"] + embed["roof shape:flat"]) / 3, rtol=1e-6
    )
    np.testing.assert_allclose(x[1], (embed["name:Only unknown"] + embed["colour:red"]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(x[2], 0)
    assert "name:Unknown key" not in builder.cache  # a zero-weight tag beside weighted ones is never embedded
    assert TagWeights.official()("highway:residential") == pytest.approx(math.log(3940545))
    assert TagWeights.official()("no such key:x") == 0.0


def test_cached_tags_are_not_embedded_again_and_batches_embed_once(tmp_path) -> None:
    chips = [
        (entities((box(1, 1, 2, 2), "building:yes"), (Point(5, 5), f"shop:kind{i}")), CHIP) for i in range(3)
    ]
    first = HashEncoder()
    graphs = GraphBuilder(first, cache_dir=tmp_path).build_many(chips)
    assert len(first.calls) == 1 and sorted(first.calls[0]) == [
        "building:building",
        "shop:kind0",
        "shop:kind1",
        "shop:kind2",
    ]
    second = HashEncoder()
    again = GraphBuilder(second, cache_dir=tmp_path)
    for graph, (chip_entities, bounds) in zip(graphs, chips, strict=True):
        single = again.build(chip_entities, bounds)
        for t in NODE_TYPES:
            torch.testing.assert_close(single[t].x, graph[t].x)
    assert second.calls == []


def test_empty_chip_is_a_valid_empty_graph(builder) -> None:
    graph = builder.build(entities((Point(50, 50), "amenity:bench")), CHIP)
    for t in NODE_TYPES:
        assert graph[t].x.shape == (0, 8) and graph[t].pos.shape == (0, POINTS_PER_NODE[t], 2)
    for edge in EDGE_TYPES:
        assert graph[edge].edge_index.shape == (2, 0) and graph[edge].edge_index.dtype == torch.long
    batch = batch_graphs([graph, builder.build(entities((box(1, 1, 2, 2), "building:yes")), CHIP)])
    assert batch["polygon"].batch.tolist() == [1]


@pytest.mark.parametrize(
    ("frame", "bounds", "message"),
    [
        (gpd.GeoDataFrame(geometry=[Point(1, 1)]), CHIP, "'tags' column"),
        (entities((Point(1, 1), "a:b")), (5, 0, 1, 10), "west < east"),
        (entities((Point(1, 1), "a:b")), (0, 0, 1), "west, south, east, north"),
    ],
)
def test_bad_input_raises_geolink_error(builder, frame, bounds, message) -> None:
    with pytest.raises(GeolinkError, match=message):
        builder.build(frame, bounds)


def test_real_osm_chip_with_the_default_minilm_encoder(tmp_path) -> None:
    """Pyrosm's bundled Kouvola PBF through OSMIndex and the real default text model (MiniLM, 384-d)."""
    pyrosm = pytest.importorskip("pyrosm")
    osm = read_osm(pyrosm.get_data("test_pbf"))
    lon, lat = osm.geometry.union_all().centroid.coords[0]
    index = OSMIndex(osm, local_utm(lon, lat))
    chip = chip_for_cell(h3.str_to_int(h3.latlng_to_cell(lat, lon, 9)), index.crs)
    builder = GraphBuilder(cache_dir=tmp_path)
    graph = builder.build(index.query(chip.bounds), chip)
    assert sum(graph[t].num_nodes for t in NODE_TYPES) > 10
    features = torch.cat([graph[t].x for t in NODE_TYPES]).numpy()
    assert features.shape[1] == 384
    norms = np.linalg.norm(features, axis=1)  # weighted means of unit-length MiniLM vectors
    assert (norms > 0.3).all() and (norms < 1 + 1e-4).all()
    vectors = builder.cache.embed(["building:building", "building:house", "natural:water"])
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # real semantics, not a stand-in
