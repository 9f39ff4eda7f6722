"""OSM sources: PBF (pyrosm), vector files, the official example folders, the safe pickle reader, OSMIndex."""

from __future__ import annotations

import json
import os
import pickle

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point, box

from geolink_store.chips import local_utm
from geolink_store.errors import GeolinkError
from geolink_store.sources.osm import (
    OSMIndex,
    iter_osm_pieces,
    load_pickle_safely,
    read_example_folder,
    read_osm,
)

pyrosm = pytest.importorskip("pyrosm")
KOUVOLA = pyrosm.get_data("test_pbf")  # ships with pyrosm: works in a fresh clone
MONACO = "osm/monaco.osm.pbf"
EXAMPLES = "geolink_example/osm2graph_example"


@pytest.fixture(scope="module")
def kouvola() -> gpd.GeoDataFrame:
    return read_osm(KOUVOLA)


def _has(entities: gpd.GeoDataFrame, key: str) -> np.ndarray:
    return np.array([key in tags for tags in entities["tags"]])


def test_pbf_reads_features_with_all_their_tags(shared_data) -> None:
    monaco = read_osm(shared_data / MONACO)
    assert monaco.crs == "EPSG:4326" and list(monaco.columns[:2]) == ["osm_type", "osm_id"]
    assert not monaco[["osm_type", "osm_id"]].duplicated().any()
    assert _has(monaco, "building").sum() >= 1256 and _has(monaco, "highway").sum() >= 2852
    assert (_has(monaco, "amenity") & (monaco["osm_type"] == "node")).sum() >= 700
    assert _has(monaco, "shop").sum() > 50 and _has(monaco, "natural").sum() > 0
    # tags beyond the filter keys come along: names, addresses, crossings
    assert _has(monaco, "name").sum() > 500 and _has(monaco, "crossing").sum() > 100
    assert set(monaco.geom_type) <= {"Point", "LineString", "Polygon", "MultiPolygon", "MultiLineString"}
    assert monaco.is_valid.all()


def test_pbf_bbox_keeps_only_intersecting_entities(kouvola) -> None:
    west, south, east, north = kouvola.total_bounds
    middle = (west + east) / 2
    part = read_osm(KOUVOLA, (west, south, middle, north))
    assert 0 < len(part) < len(kouvola)
    assert part.intersects(box(west, south, middle, north)).all()
    with pytest.raises(GeolinkError, match="no OSM entities"):
        read_osm(KOUVOLA, (0.0, 0.0, 0.01, 0.01))


@pytest.mark.parametrize("size", [10, 2000, 100_000])
def test_truncated_or_foreign_pbf_raises_geolink_error(tmp_path, size) -> None:
    cut = tmp_path / "cut.osm.pbf"
    cut.write_bytes(open(KOUVOLA, "rb").read()[:size])
    with pytest.raises(GeolinkError, match="cannot read OSM PBF"):
        read_osm(cut)


@pytest.mark.parametrize(("name", "content", "message"), [("a.txt", b"x", "unknown OSM source format"),
                                                          ("missing.pbf", None, "not found")])  # fmt: skip
def test_unknown_or_missing_source(tmp_path, name, content, message) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(GeolinkError, match=message):
        read_osm(tmp_path / name)


def test_vector_files_with_tags_labels_or_attributes(tmp_path) -> None:
    shapes = [box(7.40, 43.70, 7.41, 43.71), Point(7.42, 43.73)]
    frames = {
        "tags.geoparquet": {"tags": [json.dumps({"building": "yes"}), json.dumps({"amenity": "cafe"})]},
        "label.geojson": {"label": ["building:building", "amenity:cafe;cuisine:pizza;burger"]},
        "columns.gpkg": {"building": ["yes", None], "amenity": [None, "cafe"], "osm_id": [1, 2]},
    }
    for name, columns in frames.items():
        path = tmp_path / name
        frame = gpd.GeoDataFrame(columns, geometry=shapes, crs="EPSG:4326").to_crs("EPSG:3857")
        frame.to_parquet(path) if name.endswith("parquet") else frame.to_file(path)
        entities = read_osm(path)
        assert entities.crs == "EPSG:4326"
        np.testing.assert_allclose(entities.total_bounds, [7.40, 43.70, 7.42, 43.73], atol=1e-9)
        assert len(entities) == 2, name
    assert read_osm(tmp_path / "columns.gpkg")["tags"].tolist() == [{"building": "yes"}, {"amenity": "cafe"}]
    assert read_osm(tmp_path / "label.geojson")["tags"][1] == "amenity:cafe;cuisine:pizza;burger"


def test_non_utf8_and_invalid_geometries_in_a_file(tmp_path) -> None:
    bowtie = [[7.40, 43.70], [7.41, 43.71], [7.41, 43.70], [7.40, 43.71], [7.40, 43.70]]
    raw = (
        b'{"type":"FeatureCollection","features":['
        b'{"type":"Feature","properties":{"amenity":"caf\xe9"},"geometry":{"type":"Point","coordinates":[7.42,43.73]}},'
        b'{"type":"Feature","properties":{"building":"yes"},"geometry":{"type":"Polygon","coordinates":['
        + json.dumps(bowtie).encode()
        + b"]}}]}"
    )
    (tmp_path / "bad.geojson").write_bytes(raw)
    entities = read_osm(tmp_path / "bad.geojson")
    assert entities["tags"][0] == {"amenity": "café"}
    assert entities.is_valid.all() and entities.geom_type[1] == "MultiPolygon"


def test_official_example_folder(shared_data) -> None:
    chip = read_example_folder(shared_data / EXAMPLES / "a702502933_US_21")
    assert chip.bbox == pytest.approx(
        (-116.68652769992475, 43.62422610360069, -116.6840584115954, 43.62649897181801)
    )
    assert all(type(v) is float for v in chip.bbox)
    assert len(chip.entities) == 51 and chip.meta["center_tags"] == {"building": "school"}
    assert chip.entities.within(box(*chip.bbox).buffer(1e-9)).all()
    assert len(read_osm(shared_data / EXAMPLES / "a702502933_US_21")) == 51


def test_example_folder_without_vectors_is_an_empty_chip(tmp_path) -> None:
    folder = tmp_path / "empty_chip"
    folder.mkdir()
    (folder / "empty_chip.pickle").write_bytes(pickle.dumps({"bbox": (1.0, 2.0, 3.0, 4.0), "time": None}))
    assert read_example_folder(folder).entities.empty
    with pytest.raises(GeolinkError, match="no OSM entities"):
        read_osm(folder)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/geolink-pwned",))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (pickle.dumps({"bbox": _Exploit()}), "refusing to unpickle posix.system"),
        (pickle.dumps({"bbox": np.array([1.0, 2.0])}), "refusing to unpickle"),
        (pickle.dumps({"bbox": np.str_("x")}), "refusing to unpickle"),
        (b"not a pickle", "cannot read"),
    ],
)
def test_pickle_reader_refuses_anything_but_plain_data(payload, message) -> None:
    with pytest.raises(GeolinkError, match=message):
        load_pickle_safely(payload)
    assert not os.path.exists("/tmp/geolink-pwned")


def test_pickle_reader_keeps_numpy_numbers_as_python_numbers() -> None:
    data = {"bbox": (np.float64(1.5), np.float32(2.5), np.int64(3), 4.0), "tags": [{"a": "b"}], "s": {1, 2}}
    assert load_pickle_safely(pickle.dumps(data)) == {
        "bbox": (1.5, 2.5, 3, 4.0),
        "tags": [{"a": "b"}],
        "s": {1, 2},
    }


def test_index_queries_match_a_brute_force_scan(kouvola) -> None:
    lon, lat = kouvola.geometry.union_all().centroid.coords[0]
    index = OSMIndex(kouvola, local_utm(lon, lat))
    projected = kouvola.to_crs(index.crs)
    x, y = projected.geometry.union_all().centroid.coords[0]
    bounds = (x - 300, y - 300, x + 300, y + 300)
    hits = index.query(bounds)
    expected = np.flatnonzero(projected.intersects(box(*bounds)))
    assert hits.index.tolist() == expected.tolist() and len(hits) > 20
    assert hits.crs == index.crs
    assert all(isinstance(tags, tuple) and all(":" in tag for tag in tags) for tags in hits["tags"])


def test_pieces_cover_the_region(kouvola) -> None:
    west, south, east, north = kouvola.total_bounds
    pieces = list(iter_osm_pieces(KOUVOLA, (west, south, east, north), piece_deg=0.01, margin_deg=0.002))
    assert len(pieces) > 1
    seen = set()
    for (pw, ps, pe, pn), entities in pieces:
        assert (
            entities.empty or entities.intersects(box(pw - 0.002, ps - 0.002, pe + 0.002, pn + 0.002)).all()
        )
        seen |= set(zip(entities["osm_type"], entities["osm_id"], strict=True))
    assert seen == set(zip(kouvola["osm_type"], kouvola["osm_id"], strict=True))


def test_index_needs_a_crs() -> None:
    with pytest.raises(GeolinkError, match="no CRS"):
        OSMIndex(gpd.GeoDataFrame({"tags": [{}]}, geometry=[Point(0, 0)]), "EPSG:3857")
