"""The explorer page and the static maps in a real headless Chromium (Debian's), offline.

Each page must load with no console error and no request to any other host, draw its map, and do what a
user does: click a cell for similar ones, mark cells, train a head and see its predictions.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from geolink_store.query.maps import results_map
from geolink_store.query.search import search
from geolink_store.store import Store

K = 6


class Watched:
    """A page with its console errors and the requests it made to hosts other than ``host``."""

    def __init__(self, browser, host: str | None) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 800})
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self._check(request.url, host))

    def _check(self, url: str, host: str | None) -> None:
        parts = urlparse(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != host:
            self.foreign.append(url)

    def clean(self) -> None:
        assert self.errors == [] and self.foreign == []


def _click_cell(page, h3: str) -> None:
    """Click the centre of a drawn cell, as a user would."""
    x, y = page.evaluate(
        """h3 => {
            let ring = null;
            window.explorer.state.cells.eachLayer(l => {
                if (l.feature.properties.h3 === h3) ring = l.feature.geometry.coordinates[0].slice(0, -1);
            });
            const lon = ring.reduce((s, p) => s + p[0], 0) / ring.length;
            const lat = ring.reduce((s, p) => s + p[1], 0) / ring.length;
            const point = window.explorer.map.latLngToContainerPoint([lat, lon]);
            const box = document.getElementById("map").getBoundingClientRect();
            return [point.x + box.left, point.y + box.top];
        }""",
        h3,
    )
    page.mouse.click(x, y)


@pytest.fixture(scope="module")
def by_buildings(sample_store) -> list[str]:
    """The sample's cells, fewest OSM building parts first (hex ids)."""
    cells = Store.open(sample_store).table("cells").to_arrow().to_pandas().sort_values(["n_polygon", "h3"])
    return [f"{h:x}" for h in cells["h3"]]


def test_the_explorer_searches_trains_and_draws_offline(browser, explorer, by_buildings, tmp_path):
    watched = Watched(browser, urlparse(explorer.url).netloc)
    page = watched.page
    page.goto(explorer.url)
    page.wait_for_function(
        "window.explorer.state.cells && window.explorer.state.cells.getLayers().length > 0"
    )
    drawn = page.evaluate("window.explorer.state.cells.getLayers().length")
    assert drawn == len(by_buildings)
    page.wait_for_function("document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
    assert "imagery" in page.inner_text("#imagery-note")

    page.fill("#k", str(K))
    query = by_buildings[-1]
    _click_cell(page, query)
    page.wait_for_function(f"document.querySelectorAll('#results li').length === {K}")
    shown = page.eval_on_selector_all("#results li", "items => items.map(i => i.dataset.h3)")
    centre = page.evaluate(
        "h3 => { let c; window.explorer.state.cells.eachLayer(l => { if (l.feature.properties.h3 === h3) "
        "c = l.getBounds().getCenter(); }); return [c.lng, c.lat]; }",
        query,
    )
    api = explorer.get(f"/api/search?lon={centre[0]}&lat={centre[1]}&k={K}&modality=fused")[1]
    assert api["query"] == [query]
    assert shown == [f["properties"]["h3"] for f in api["features"]]
    page.screenshot(path=tmp_path / "search.png")

    page.check("input[value=positive]")
    for h3 in by_buildings[-3:]:
        _click_cell(page, h3)
    page.check("input[value=negative]")
    for h3 in by_buildings[:3]:
        _click_cell(page, h3)
    assert page.inner_text("#n-positive") == "3" and page.inner_text("#n-negative") == "3"
    page.click("#train")
    page.wait_for_function("window.explorer.state.column.startsWith('head:')")
    page.wait_for_function("document.querySelector('.legend').textContent.includes('P(positive)')")
    fills = page.evaluate(
        "() => { const s = new Set(); window.explorer.state.cells.eachLayer(l => s.add(l.options.fillColor));"
        " return s.size; }"
    )
    assert fills > 1
    assert "predicted positive" in page.inner_text("#head")

    page.click("#run-sql")
    page.wait_for_selector("#sql-result a")
    page.click("#sql-result a >> nth=0")
    page.wait_for_selector(".leaflet-popup-content")
    page.screenshot(path=tmp_path / "trained.png")
    watched.clean()
    page.close()


def test_a_static_map_renders_offline(browser, sample_store, tmp_path):
    store = Store.open(sample_store)
    results = search(store, cells=store.table("cells").to_arrow()["h3"][0].as_py(), k=8)
    path = tmp_path / "results.html"
    results_map(results, path, store=store)
    watched = Watched(browser, host=None)
    page = watched.page
    page.goto(Path(path).as_uri())
    page.wait_for_selector("#title")
    assert "8 cells most similar" in page.inner_text("#title")
    assert page.inner_text("#caption") == "cosine distance to the query"
    assert page.eval_on_selector("img.leaflet-image-layer", "img => img.complete && img.naturalWidth") > 0
    assert page.locator(".leaflet-overlay-pane canvas").count() == 1
    page.screenshot(path=tmp_path / "static.png")
    watched.clean()
    page.close()
