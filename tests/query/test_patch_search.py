"""Coarse-to-fine search over ``patches``: finds the cells holding a small object that their whole-cell vector
averages away, and says which patch it is.

Rows are for REAL H3 cells (300 res-9 cells around Kampala, their 49 res-11 patches each) with SYNTHETIC
vectors: patches scatter around their cell's vector; five patches in five cells carry one planted "object"
vector, and each cell's own vector is the mean of its patches (as an encoder's pooled vector is).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from geolink_store import grid
from geolink_store.cli.main import main
from geolink_store.errors import GeolinkError
from geolink_store.query.patch_search import search_patches
from geolink_store.query.search import search
from geolink_store.store import Store, patches_schema
from geolink_store.testing import cells_table, h3_grid

DIM = 16
FINE_RES = 11


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    """A store whose patches hide one object in five cells; returns (path, object patches, their cells)."""
    rng = np.random.default_rng(3)
    cells = h3_grid(300, 9)
    kids = [grid.children([cell], FINE_RES) for cell in cells]
    centres = rng.normal(size=(len(cells), DIM))
    vectors = [centre + 0.3 * rng.normal(size=(len(k), DIM)) for centre, k in zip(centres, kids, strict=True)]
    thing = 3 * rng.normal(size=DIM)
    hosts = rng.choice(len(cells), 5, replace=False)
    objects = []
    for host in hosts:
        spot = rng.integers(len(kids[host]))
        vectors[host][spot] = thing + 0.05 * rng.normal(size=DIM)
        objects.append(int(kids[host][spot]))
    table = cells_table(cells, DIM)
    means = [v.mean(axis=0).astype(np.float32) for v in vectors]
    column = table.schema.get_field_index("fused")
    table = table.set_column(column, "fused", pa.array(means, table["fused"].type))
    patch_ids = np.concatenate(kids)
    fused = np.concatenate(vectors).astype(np.float32)
    patches = pa.table(
        {
            "h3": patch_ids,
            "res": np.full(len(patch_ids), FINE_RES, np.int8),
            "parent": np.repeat(cells, [len(k) for k in kids]),
            "image": list(fused),
            "fused": list(fused),
            "model_id": ["test-model"] * len(patch_ids),
            "epoch": [table["epoch"][0].as_py()] * len(patch_ids),
        }
    )
    path = tmp_path_factory.mktemp("patches") / "db"
    store = Store.create_or_open(path)
    store.register_model("test-model", name="synthetic", architecture="none", config={}, text_encoder="none")
    store.upsert("cells", table)
    store.upsert("patches", patches.cast(patches_schema(DIM, DIM)))
    return path, objects, [int(cells[host]) for host in hosts]


def test_patch_search_finds_the_object_that_cell_search_misses(planted) -> None:
    path, objects, hosts = planted
    lon, lat = grid.cell_lonlat([objects[0]])
    found = search_patches(path, lonlat=(float(lon[0]), float(lat[0])), k=4)
    rows = found.rows.to_pylist()
    assert found.query_cells.tolist() == [objects[0]]
    assert {row["h3"] for row in rows} == set(hosts[1:])
    assert {row["patch"] for row in rows} == set(objects[1:])
    assert all(grid.parents([row["patch"]], 9)[0] == row["h3"] for row in rows)
    assert [row["distance"] for row in rows] == sorted(row["distance"] for row in rows)
    assert rows[0]["distance"] < 0.01 and rows[0]["patch_hex"] == grid.hex_id(rows[0]["patch"])
    whole = search(path, cells=hosts[0], k=4)["h3"].tolist()
    assert len(set(whole) & set(hosts[1:])) <= 1  # the cell vectors average the object away


def test_cell_ids_stand_for_their_patches_and_filters_apply(planted) -> None:
    path, objects, hosts = planted
    by_cell = search_patches(path, cells=grid.hex_id(hosts[0]), k=3, modality="image")
    assert len(by_cell.rows) == 3 and hosts[0] not in by_cell.rows["h3"].to_pylist()
    assert len(by_cell.query_cells) == 49
    lon, lat = grid.cell_lonlat(hosts[1:3])
    west, east = sorted(lon)
    south, north = sorted(lat)
    box = f"{west - 1e-4},{south - 1e-4},{east + 1e-4},{north + 1e-4}"
    inside = search_patches(path, cells=objects[0], k=2, within=box).rows
    centres = zip(inside["lon"].to_pylist(), inside["lat"].to_pylist(), strict=True)
    assert all(west - 1e-4 <= x <= east + 1e-4 and south - 1e-4 <= y <= north + 1e-4 for x, y in centres)
    assert inside["patch"].to_pylist()[0] in objects[1:3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cells": "8a6acc2da8b7fff", "modality": "osm"}, "patches hold image and fused"),
        ({"cells": "872830828ffffff"}, "has resolution 7"),
        ({"lonlat": (0.0, 0.0)}, "not in the store"),
        ({"cells": "891f1d48177ffff"}, "has no stored patches"),
    ],
)
def test_bad_patch_queries_raise_one_clear_error(planted, kwargs, message) -> None:
    with pytest.raises(GeolinkError, match=message):
        search_patches(planted[0], **kwargs)


def test_cli_search_patches_prints_where_inside_each_cell(planted) -> None:
    path, objects, hosts = planted
    args = ["search", "--db", str(path), "--cell", grid.hex_id(objects[0]), "--patches", "--k", "4"]
    result = CliRunner().invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert {item["patch_hex"] for item in found} == {grid.hex_id(cell) for cell in objects[1:]}
    assert {"h3", "h3_hex", "distance", "patch", "patch_lon", "patch_lat"} <= set(found[0])
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0 and grid.hex_id(objects[1]) in table.stdout
