"""Maps of cells: PNG or self-contained HTML, the store's imagery under them, refused suffixes, CLI --map."""

from __future__ import annotations

import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from geolink_store import grid
from geolink_store.cli import main
from geolink_store.constants import WGS84
from geolink_store.errors import InputError
from geolink_store.query.maps import draw_cells
from geolink_store.store import Store


@pytest.fixture(scope="module")
def cells(sample_store: Path) -> gpd.GeoDataFrame:
    table = Store.open(sample_store).table("cells").to_arrow()
    ids = table["h3"].to_numpy()
    return gpd.GeoDataFrame(
        {"h3": ids, "n_polygon": table["n_polygon"].to_numpy()}, geometry=grid.cell_geometries(ids), crs=WGS84
    )


def _map_data(path: Path) -> dict:
    """The JSON a static HTML map carries."""
    text = path.read_text()
    return json.loads(re.search(r"const data = (\{.*\});\n", text).group(1).replace("<\\/", "</"))


def test_png_draws_the_imagery_under_the_cells(cells, sample_store, tmp_path):
    with_imagery, without = tmp_path / "with.png", tmp_path / "without.png"
    draw_cells(
        cells, with_imagery, column="n_polygon", title="t", caption="c", store=Store.open(sample_store)
    )
    draw_cells(cells, without, column="n_polygon", title="t", caption="c")
    images = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) for p in (with_imagery, without)]
    assert images[0].shape == images[1].shape
    assert np.abs(images[0] - images[1]).mean() > 5  # the imagery changed the picture


def test_html_is_self_contained(cells, sample_store, tmp_path):
    path = tmp_path / "map.htm"
    highlight = [int(cells["h3"].iloc[0])]
    store = Store.open(sample_store)
    draw_cells(
        cells,
        path,
        column="n_polygon",
        title="buildings <b>",
        caption="parts",
        store=store,
        highlight=highlight,
    )
    text = path.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(?!data:)", text)  # loads no file, no host
    assert "L.map(" in text and "buildings &lt;b&gt;" in text
    data = _map_data(path)
    assert data["title"] == "buildings <b>" and data["caption"] == "parts" and data["column"] == "n_polygon"
    assert data["imagery"].startswith("data:image/png;base64,")
    features = data["cells"]["features"]
    assert [f["properties"]["h3"] for f in features] == [f"{h:x}" for h in cells["h3"]]
    assert [f["properties"]["n_polygon"] for f in features] == cells["n_polygon"].tolist()
    assert data["range"] == [cells["n_polygon"].min(), cells["n_polygon"].max()]
    assert len(data["highlight"]["features"]) == 1
    assert _map_data_without_store(cells, tmp_path)["imagery"] is None


def _map_data_without_store(cells, tmp_path: Path) -> dict:
    path = tmp_path / "plain.html"
    draw_cells(cells, path, column="n_polygon", title="t", caption="c")
    return _map_data(path)


@pytest.mark.parametrize("name", ["map.jpg", "map", "map.png.txt", "missing/map.png"])
def test_other_targets_are_refused_before_writing(cells, tmp_path, name):
    with pytest.raises(InputError):
        draw_cells(cells, tmp_path / name, column="n_polygon", title="t", caption="c")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_column_is_refused(cells, tmp_path):
    with pytest.raises(InputError, match="column 'nope'"):
        draw_cells(cells, tmp_path / "m.png", column="nope", title="t", caption="c")
    assert list(tmp_path.iterdir()) == []


def test_missing_values_are_grey(cells, tmp_path):
    frame = cells.assign(score=np.where(np.arange(len(cells)) % 2, np.nan, 1.0))
    draw_cells(frame, tmp_path / "m.html", column="score", title="t", caption="c")
    colours = [f["properties"]["colour"] for f in _map_data(tmp_path / "m.html")["cells"]["features"]]
    assert colours[1::2] == ["#888888"] * len(colours[1::2]) and "#888888" not in colours[::2]


def test_search_map_png_and_refused_suffix(sample_store, tmp_path):
    runner = CliRunner()
    cell = f"{Store.open(sample_store).table('cells').to_arrow()['h3'][0].as_py():x}"
    png = tmp_path / "results.png"
    done = runner.invoke(
        main, ["search", "--db", str(sample_store), "--cell", cell, "--k", "5", "--map", str(png)]
    )
    assert done.exit_code == 0, done.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = runner.invoke(
        main, ["search", "--db", str(sample_store), "--cell", cell, "--map", str(tmp_path / "r.jpg")]
    )
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and bad.output.startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.png"]


def test_heads_predict_map_is_drawn_or_refused(sample_store_copy, tmp_path):
    store = Store.open(sample_store_copy)
    cells = store.table("cells").to_arrow().to_pandas()
    labels = tmp_path / "labels.csv"
    pd.DataFrame(
        {"h3": [f"{h:x}" for h in cells["h3"]], "label": np.where(cells["n_polygon"] > 0, "built", "open")}
    ).to_csv(labels, index=False)
    runner = CliRunner()
    trained = runner.invoke(
        main,
        [
            "heads",
            "train",
            "--db",
            str(sample_store_copy),
            "--labels",
            str(labels),
            "--split",
            "random",
            "--format",
            "json",
        ],
    )
    assert trained.exit_code == 0, trained.output
    head = json.loads(trained.stdout)["head_id"]
    before = store.table("heads").version
    bad = runner.invoke(
        main, ["heads", "predict", "--db", str(sample_store_copy), "--head", head, "--map", "p.gif"]
    )
    assert (
        bad.exit_code == 1 and bad.output.startswith("error: ") and "predictions" not in store.table_names()
    )
    html = tmp_path / "predictions.html"
    done = runner.invoke(
        main, ["heads", "predict", "--db", str(sample_store_copy), "--head", head, "--map", str(html)]
    )
    assert done.exit_code == 0, done.output
    data = _map_data(html)
    assert data["column"] == "P(open)" and data["imagery"] and "built" in data["title"]
    assert store.table("heads").version == before
