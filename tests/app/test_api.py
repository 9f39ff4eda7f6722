"""The explorer's JSON API and tiles over a real ingested store, served by uvicorn, read over HTTP."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from served import serve, stop

from geolink_store.cli.main import main
from geolink_store.store import Store


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    x = (lon / 180 + 1) / 2
    y = (1 - np.log(np.tan(np.radians(lat)) + 1 / np.cos(np.radians(lat))) / np.pi) / 2
    return int(x * 2**z), int(y * 2**z)


def _cli(*args: str) -> str:
    done = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert done.exit_code == 0, done.output
    return done.stdout


@pytest.fixture(scope="module")
def centre(sample_store) -> tuple[float, float]:
    """The centre of the most built-up cell (it has OSM, so every modality can query from it)."""
    cells = Store.open(sample_store).table("cells").to_arrow().to_pandas()
    row = cells.loc[cells["n_polygon"].idxmax()]
    return float(row["lon"]), float(row["lat"])


@pytest.mark.parametrize("modality", ["image", "osm", "fused"])
def test_search_returns_the_cells_of_the_cli(explorer, sample_store, centre, modality):
    lon, lat = centre
    status, body, kind = explorer.get(f"/api/search?lon={lon}&lat={lat}&k=7&modality={modality}")
    assert status == 200 and kind.startswith("application/json")
    assert body["type"] == "FeatureCollection" and len(body["features"]) == 7
    cli = json.loads(
        _cli(
            "search",
            "--db",
            str(sample_store),
            "--lonlat",
            f"{lon},{lat}",
            "--k",
            "7",
            "--modality",
            modality,
            "--format",
            "json",
        )
    )
    assert [f["properties"]["h3"] for f in body["features"]] == [row["h3_hex"] for row in cli]
    assert np.allclose(
        [f["properties"]["distance"] for f in body["features"]], [row["distance"] for row in cli]
    )
    query = body["query"][0]
    by_cell = explorer.get(f"/api/search?cell={query}&k=7&modality={modality}")[1]
    assert [f["properties"]["h3"] for f in by_cell["features"]] == [row["h3_hex"] for row in cli]


def test_search_within_a_view_keeps_to_it(explorer, centre):
    lon, lat = centre
    bbox = f"{lon - 0.0004},{lat - 0.0004},{lon + 0.0004},{lat + 0.0004}"
    body = explorer.get(f"/api/search?lon={lon}&lat={lat}&k=50&bbox={bbox}")[1]
    assert 0 < len(body["features"]) < 50
    for feature in body["features"]:
        ring = np.array(feature["geometry"]["coordinates"][0])
        x, y = ring[:-1].mean(axis=0)
        assert lon - 0.0004 <= x <= lon + 0.0004 and lat - 0.0004 <= y <= lat + 0.0004


def test_cells_in_a_bbox_carry_the_asked_column(explorer, sample_store):
    table = Store.open(sample_store).table("cells").to_arrow()
    status, body, _ = explorer.get("/api/cells?bbox=32.5,0.3,32.7,0.4&column=n_polygon")
    assert status == 200 and len(body["features"]) == table.num_rows and not body["truncated"]
    stored = {
        f"{h:x}": n for h, n in zip(table["h3"].to_pylist(), table["n_polygon"].to_pylist(), strict=True)
    }
    assert {f["properties"]["h3"]: f["properties"]["value"] for f in body["features"]} == stored
    assert body["range"] == [min(stored.values()), max(stored.values())]
    assert len(explorer.get("/api/cells?bbox=32.5,0.3,32.7,0.4&limit=5")[1]["features"]) == 5
    assert explorer.get("/api/cells?bbox=10,10,11,11")[1]["features"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/search?k=3",
        "/api/search?lon=1&lat=2&cell=8c6acc2c9af15ff",
        "/api/search?lon=3.0&lat=0.35&k=3",
        "/api/search?cell=zzz",
        "/api/search?cell=8c6acc2c9af15ff&k=0",
        "/api/search?cell=8c6acc2c9af15ff&modality=sound",
        "/api/search?lon=abc&lat=1",
        "/api/search?lon=32.59&lat=0.35&bbox=1,2,3",
        "/api/cells",
        "/api/cells?bbox=1,2",
        "/api/cells?bbox=5,0,1,1",
        "/api/cells?bbox=32,0,33,1&column=nope",
        "/api/cells?bbox=32,0,33,1&column=head:x99",
        "/api/cells?bbox=32,0,33,1&limit=0",
        "/api/sql?q=DROP%20TABLE%20cells",
        "/api/sql?q=COPY%20cells%20TO%20'/tmp/x.csv'",
        "/api/sql?q=SELEC%201",
        "/api/sql",
        "/tiles/3/9/1.png",
        "/tiles/-1/0/0.png",
        "/tiles/a/0/0.png",
    ],
)
def test_bad_requests_get_a_4xx_with_a_json_error(explorer, path):
    status, body, kind = explorer.get(path)
    assert 400 <= status < 500, (status, body)
    assert kind.startswith("application/json") and set(body) == {"error"} and body["error"]
    assert "Traceback" not in body["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"positive": [], "negative": ["8c6acc2c9af15ff"]},
        {"positive": ["8c6acc2c9af15ff"], "negative": ["8c6acc2c9af15ff"]},
        {"positive": ["8c756910e391dff"], "negative": ["8c6acc2c9af15ff"]},
        {"positive": ["8c6acc2c9af15ff"], "negative": ["8c6acc2c9af39ff"], "kind": "forest"},
        {"positive": "8c6acc2c9af15ff"},
        [1, 2],
    ],
)
def test_bad_head_requests_get_a_4xx(explorer, body):
    status, answer, _ = explorer.post("/api/heads", body)
    assert 400 <= status < 500 and set(answer) == {"error"}, (status, answer)


def test_a_head_from_marked_cells_scores_every_cell(explorer, sample_store):
    cells = Store.open(sample_store).table("cells").to_arrow().to_pandas()
    built = cells.sort_values("n_polygon")
    positive = [f"{h:x}" for h in built["h3"].tail(4)]
    negative = [f"{h:x}" for h in built["h3"].head(4)]
    status, head, _ = explorer.post("/api/heads", {"positive": positive, "negative": negative})
    assert status == 200, head
    assert head["positive"] == 4 and head["negative"] == 4 and head["column"] == f"head:{head['head_id']}"
    body = explorer.get(f"/api/cells?bbox=32.5,0.3,32.7,0.4&column={head['column']}")[1]
    scores = {f["properties"]["h3"]: f["properties"]["value"] for f in body["features"]}
    assert len(scores) == len(cells) and all(0 <= s <= 1 for s in scores.values())
    assert min(scores[h] for h in positive) > max(scores[h] for h in negative)
    assert head["predicted_positive"] == sum(s >= 0.5 for s in scores.values())
    assert "heads" not in Store.open(sample_store).table_names()  # explorer heads stay in the session


def test_labels_geojson_is_read_into_cells(explorer, sample_store):
    cells = Store.open(sample_store).table("cells").to_arrow()
    lon, lat, h3 = cells["lon"][0].as_py(), cells["lat"][0].as_py(), cells["h3"][0].as_py()
    labels = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": {"label": "positive"},
            }
        ],
    }
    status, body, _ = explorer.post("/api/labels", labels)
    assert status == 200 and body == {
        f"{h3:x}": {"label": "positive", "lon": pytest.approx(lon), "lat": pytest.approx(lat)}
    }
    assert explorer.post("/api/labels", {"type": "Feature"})[0] == 400


def test_sql_is_read_only_and_gives_h3_as_hex(explorer, sample_store):
    status, body, _ = explorer.get(
        "/api/sql?q=SELECT%20h3,%20n_polygon%20FROM%20cells%20ORDER%20BY%20h3%20LIMIT%203"
    )
    assert status == 200 and body["columns"] == ["h3", "n_polygon"] and body["h3_columns"] == ["h3"]
    stored = sorted(Store.open(sample_store).table("cells").to_arrow()["h3"].to_pylist())[:3]
    assert [row[0] for row in body["rows"]] == [f"{h:x}" for h in stored]
    many = explorer.get("/api/sql?q=SELECT%20*%20FROM%20range(5000)")[1]
    assert len(many["rows"]) == 1000 and many["truncated"]


def test_tiles_are_the_stores_imagery(explorer, centre):
    lon, lat = centre
    x, y = _tile_of(lon, lat, 19)
    status, png, kind = explorer.get(f"/tiles/19/{x}/{y}.png")
    assert status == 200 and kind == "image/png"
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert image.shape == (256, 256, 4) and (image[..., 3] == 255).mean() > 0.5 and image[..., :3].std() > 10
    far = np.asarray(Image.open(io.BytesIO(explorer.get("/tiles/19/0/0.png")[1])))
    assert far.shape == (256, 256, 4) and not far[..., 3].any()


def test_info_describes_the_store(explorer, sample_store):
    info = explorer.get("/api/info")[1]
    assert info["cells"] == Store.open(sample_store).table("cells").count_rows()
    assert info["imagery"]["available"] and info["imagery"]["epochs"]
    assert {"n_polygon", "n_line", "n_point"} <= set(info["columns"])


def test_a_store_without_imagery_serves_no_imagery_layer(tmp_path):
    from geolink_store.testing import synthetic_store

    synthetic_store(tmp_path / "db", n=300)
    served = serve(tmp_path / "db")
    try:
        info = served.get("/api/info")[1]
        assert not info["imagery"]["available"] and "records no imagery" in info["imagery"]["missing"]
        tile = np.asarray(Image.open(io.BytesIO(served.get("/tiles/10/600/500.png")[1])))
        assert not tile[..., 3].any()
        assert len(served.get("/api/search?cell=" + info_cell(served) + "&k=4")[1]["features"]) == 4
    finally:
        stop(served)


def info_cell(served) -> str:
    return served.get("/api/cells?bbox=-180,-90,180,90&limit=1")[1]["features"][0]["properties"]["h3"]


def test_serve_refuses_a_missing_store(tmp_path):
    done = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "none")])
    assert done.exit_code == 1 and done.output.count("\n") == 1 and done.output.startswith("error: ")


def test_serve_binds_to_loopback_by_default_and_says_so(sample_store):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    geolink = Path(sys.executable).parent / "geolink"
    process = subprocess.Popen(
        [str(geolink), "serve", "--db", str(sample_store), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stderr.readline()
        assert f"http://127.0.0.1:{port}" in line and "only this machine" in line
        deadline = time.monotonic() + 120
        while True:  # the line comes before uvicorn listens
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=60) as response:
                    assert json.loads(response.read())["store"] == str(sample_store)
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.2)
        connections = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in connections and f"0.0.0.0:{port}" not in connections
    finally:
        process.terminate()
        process.wait(timeout=30)
