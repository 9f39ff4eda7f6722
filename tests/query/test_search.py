"""Similarity search: exact results equal brute-force numpy, spatial prefilters, ANN recall at 50k rows.

Rows are for REAL H3 cells (a res-9 grid around Kampala) with SYNTHETIC clustered vectors
(geolink_store.testing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h3
import numpy as np
import pyarrow.compute as pc
import pytest
import shapely

from geolink_store.errors import GeolinkError
from geolink_store.query.reader import TableReader
from geolink_store.query.search import search
from geolink_store.store.store import Store
from geolink_store.testing import brute_force, cells_table, h3_grid, synthetic_store


@pytest.fixture(scope="module")
def store_and_rows(tmp_path_factory: pytest.TempPathFactory):
    return synthetic_store(tmp_path_factory.mktemp("search") / "db", n=3000)


def _expected(rows, query_cells, k, keep=None, column="fused"):
    index = {cell: i for i, cell in enumerate(rows["h3"].to_pylist())}
    vectors = np.stack(rows[column].to_numpy(zero_copy_only=False))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    query = unit[[index[int(c)] for c in query_cells]].mean(axis=0)
    distances = brute_force(rows, query, column)
    allowed = ~np.isin(rows["h3"].to_numpy(), query_cells) & (True if keep is None else keep)
    order = np.flatnonzero(allowed)[np.argsort(distances[allowed], kind="stable")[:k]]
    return rows["h3"].to_numpy()[order], distances[order]


def _assert_matches(result, expected) -> None:
    """Same cells as the brute-force top-k, nearest first (cells at float32-equal distance may swap)."""
    cells, distances = expected
    assert set(result["h3"].tolist()) == set(cells.tolist())
    assert np.allclose(result["distance"].to_numpy(), distances, atol=1e-5)


def test_exact_search_equals_brute_force(store_and_rows) -> None:
    store, rows = store_and_rows
    cell = rows["h3"][123].as_py()
    result = search(store, cells=str(cell), k=10)
    expected_cells, expected_distances = _expected(rows, [cell], 10)
    assert result["h3"].tolist() == expected_cells.tolist()
    assert np.allclose(result["distance"], expected_distances, atol=1e-5)
    assert cell not in result["h3"].tolist()
    assert result.crs.to_epsg() == 4326 and all(
        shapely.contains(result.geometry.values, shapely.points(result["lon"], result["lat"]))
    )
    same = search(store, cells=h3.int_to_str(cell), k=10, modality="fused")
    assert same["h3"].tolist() == result["h3"].tolist()


def test_several_cells_average_into_one_query_and_modalities_differ(store_and_rows) -> None:
    store, rows = store_and_rows
    cells = rows["h3"].to_numpy()[[5, 900, 2000]]
    result = search(store, cells=",".join(h3.int_to_str(int(c)) for c in cells), k=7, modality="image")
    _assert_matches(result, _expected(rows, cells, 7, column="image"))
    assert not set(cells) & set(result["h3"])


def _polygon_file(path: Path, polygon: shapely.Polygon) -> Path:
    """``polygon`` as a one-feature GeoJSON file at ``path``."""
    feature = {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(polygon)}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


def test_lonlat_and_like_file_queries(store_and_rows, tmp_path: Path) -> None:
    store, rows = store_and_rows
    cell = rows["h3"][42].as_py()
    lat, lon = h3.cell_to_latlng(h3.int_to_str(cell))
    _assert_matches(search(store, lonlat=(lon, lat), k=5), _expected(rows, [cell], 5))
    neighbours = [h3.str_to_int(c) for c in h3.grid_disk(h3.int_to_str(cell), 2)]
    polygon = shapely.Polygon([(x, y) for y, x in h3.cell_to_boundary(h3.int_to_str(cell))]).buffer(0.003)
    path = _polygon_file(tmp_path / "like.geojson", polygon)
    result = search(store, like_file=path, k=5)
    inside = [
        c for c in neighbours if polygon.contains(shapely.Point(h3.cell_to_latlng(h3.int_to_str(c))[::-1]))
    ]
    assert len(inside) >= 7
    _assert_matches(result, _expected(rows, inside, 5))


def test_bbox_prefilter_gives_the_k_nearest_inside(store_and_rows) -> None:
    store, rows = store_and_rows
    cell = rows["h3"][10].as_py()
    lon, lat = rows["lon"].to_numpy(), rows["lat"].to_numpy()
    west, south = np.quantile(lon, 0.6), np.quantile(lat, 0.6)
    east, north = lon.max(), lat.max()
    keep = (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
    result = search(store, cells=cell, k=10, within=f"{west},{south},{east},{north}")
    assert len(result) == 10
    _assert_matches(result, _expected(rows, [cell], 10, keep=keep))


def test_parent_prefilter_and_polygon_file(store_and_rows, tmp_path: Path) -> None:
    store, rows = store_and_rows
    parent = rows["h3_r7"][2500].as_py()
    keep = rows["h3_r7"].to_numpy() == parent
    result = search(store, cells=rows["h3"][0].as_py(), k=100, parent=h3.int_to_str(parent))
    assert len(result) == min(100, keep.sum())
    _assert_matches(result, _expected(rows, [rows["h3"][0].as_py()], 100, keep=keep))
    hexagon = shapely.Polygon([(x, y) for y, x in h3.cell_to_boundary(h3.int_to_str(parent))])
    path = _polygon_file(tmp_path / "area.geojson", hexagon)
    inside = hexagon.contains(shapely.points(rows["lon"].to_numpy(), rows["lat"].to_numpy()))
    polygon_result = search(store, cells=rows["h3"][0].as_py(), k=30, within=str(path))
    _assert_matches(polygon_result, _expected(rows, [rows["h3"][0].as_py()], 30, keep=inside))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cells": "not-a-cell"}, "not a valid H3 cell"),
        ({"cells": "8928308280fffff"}, "not in the store"),
        ({"cells": "8928308280fffff", "lonlat": (1.0, 2.0)}, "exactly one query"),
        ({"lonlat": (32.58, 0.32), "parent": "8928308280fffff"}, "must be coarser"),
        ({"lonlat": (32.58, 0.32), "model_id": "nope"}, "has no rows"),
    ],
)
def test_bad_queries_raise_one_clear_error(store_and_rows, kwargs, message) -> None:
    with pytest.raises(GeolinkError, match=message):
        search(store_and_rows[0], **kwargs)


@pytest.mark.slow
def test_ann_recall_at_10_is_at_least_095_past_the_threshold(tmp_path: Path) -> None:
    """50k cells; IVF_HNSW_SQ index, default nprobes/refine_factor, vs exact search over the same rows."""
    rows = cells_table(h3_grid(50_000), 128, with_osm=False)
    store = Store.create_or_open(tmp_path / "db")
    store.upsert("cells", rows, index=False)
    assert store.build_indexes(min_rows=50_000) == ["fused", "image"]
    assert store.info()["tables"]["cells"]["search"] == "ann"
    rng = np.random.default_rng(7)
    recalls = []
    for i in rng.choice(rows.num_rows, 40, replace=False):
        cell = rows["h3"][int(i)].as_py()
        found = search(store, cells=cell, k=10)["h3"].tolist()
        recalls.append(len(set(found) & set(_expected(rows, [cell], 10)[0].tolist())) / 10)
    assert np.mean(recalls) >= 0.95
    parent = rows["h3_r6"][100].as_py()
    keep = rows["h3_r6"].to_numpy() == parent
    narrow = search(store, cells=rows["h3"][0].as_py(), k=10, parent=parent)
    _assert_matches(narrow, _expected(rows, [rows["h3"][0].as_py()], 10, keep=keep))
    assert pc.all(pc.equal(rows["model_id"], "test-model")).as_py()


def test_epochs_are_searched_apart_the_latest_by_default(tmp_path: Path) -> None:
    store, rows = synthetic_store(tmp_path / "db", n=600)
    later = cells_table(rows["h3"].to_numpy(), 16, seed=9, epoch="2024")
    store.upsert("cells", later)
    cell = rows["h3"][40].as_py()
    for epoch, table in ((None, later), ("2024", later), ("default", rows)):
        _assert_matches(search(store.path, cells=cell, k=8, epoch=epoch), _expected(table, [cell], 8))
    with pytest.raises(GeolinkError, match="has no epoch '1999'"):
        search(store, cells=cell, epoch="1999")


def test_search_hits_and_the_cli_load_neither_lancedb_nor_geopandas(store_and_rows) -> None:
    """What lets ``geolink search`` start fast: the hits come through pylance, as Arrow."""
    store, rows = store_and_rows
    cell = rows["h3"][7].as_py()
    code = (
        "import sys\nfrom geolink_store.cli.main import main\n"
        f"sys.argv = ['geolink', 'search', '--db', {str(store.path)!r}, '--cell', '{cell}', "
        "'--format', 'json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(*(m in sys.modules for m in ('lancedb', 'geopandas', 'torch')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    hits, loaded = out.rsplit("\n", 2)[-3], out.split()[-3:]
    assert loaded == ["False", "False", "False"]
    assert [item["h3"] for item in json.loads(hits)] == search(store, cells=cell, k=10)["h3"].tolist()


def test_a_new_table_version_is_read_again(tmp_path: Path) -> None:
    store, rows = synthetic_store(tmp_path / "db", n=200)
    reader = TableReader(store.path, "cells")
    assert reader.model_ids() == ["test-model"] and reader.default_model() == "test-model"
    store.upsert("cells", cells_table(rows["h3"].to_numpy(), 16, model_id="other"))
    again = TableReader(store, "cells")
    assert again.version > reader.version and again.model_ids() == ["other", "test-model"]
    with pytest.raises(GeolinkError, match="holds several models"):
        again.default_model()
    with pytest.raises(GeolinkError, match="has no table 'patches'"):
        TableReader(store, "patches")
