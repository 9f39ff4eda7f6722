"""Maps of cells coloured by a number: a PNG (matplotlib) or one self-contained HTML file that works offline.

:func:`draw_cells` is the one drawing path; :func:`results_map` (search results) and
:func:`predictions_map` (a head's predictions) say what to colour. An HTML map inlines the vendored Leaflet
(:mod:`geolink_store.app.assets`), its cells and its imagery backdrop, so it fetches nothing from any host.
With ``store=``, the store's own imagery (the ``imagery`` table) is drawn under the cells.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pyarrow as pa
import shapely

from geolink_store import grid
from geolink_store.constants import H3_COLUMN, WEB_MERCATOR, WGS84
from geolink_store.errors import InputError
from geolink_store.store import Store

if TYPE_CHECKING:
    import pandas as pd

MAP_SUFFIXES = (".png", ".html", ".htm")
COLOURMAP = "viridis"
HIGHLIGHT = "#d7191c"
BACKDROP_PIXELS = 1024
"""Width and height of the imagery backdrop under a map (read by window from the store's sources)."""


def check_map_path(path: str | os.PathLike) -> Path:
    """``path`` as a map target: a ``.png``, ``.html`` or ``.htm`` file in an existing folder.

    Raises:
        InputError: another suffix, or a folder that does not exist.
    """
    target = Path(path)
    if target.suffix.lower() not in MAP_SUFFIXES:
        raise InputError(f"map_path='{path}' must end in {', '.join(MAP_SUFFIXES)} (a PNG or an HTML map)")
    if not target.parent.is_dir():
        raise InputError(f"map_path='{path}': folder {target.parent} does not exist")
    return target


def draw_cells(
    cells: gpd.GeoDataFrame,
    path: str | os.PathLike,
    *,
    column: str,
    title: str,
    caption: str,
    store: Store | None = None,
    highlight: Iterable[int] = (),
) -> None:
    """Draw H3 cells coloured by ``column`` into a PNG (``.png``) or an offline HTML map (``.html``/``.htm``).

    Args:
        cells: an ``int64`` ``h3`` column, an EPSG:4326 ``geometry`` and the numeric ``column``; other scalar
            columns show in the HTML map's tooltips.
        path: the file to write.
        column: what colours the cells (viridis; missing values grey).
        title: the map's title (what is coloured, over what).
        caption: the legend's label (the quantity and its unit).
        store: draw this store's imagery (its ``imagery`` table) under the cells.
        highlight: H3 ids outlined in red (drawn whether or not they are among ``cells``).

    Raises:
        InputError: an unknown suffix, a missing folder, or ``column`` not in ``cells`` (nothing is written).
    """
    target = check_map_path(path)
    if column not in cells.columns:
        raise InputError(f"column {column!r} is not among the cells' columns ({', '.join(cells.columns)})")
    cells = cells.to_crs(WGS84) if cells.crs is not None else cells.set_crs(WGS84)
    highlighted = np.asarray(list(highlight), dtype=np.int64)
    outlines = gpd.GeoSeries(grid.cell_geometries(highlighted), crs=WGS84)
    bounds = _bounds(cells, outlines)
    values = cells[column].to_numpy(dtype=np.float64, na_value=np.nan)
    if target.suffix.lower() == ".png":
        _draw_png(target, cells, values, outlines, bounds, title=title, caption=caption, store=store)
    else:
        _draw_html(
            target, cells, values, outlines, bounds, column=column, title=title, caption=caption, store=store
        )


def results_map(results: gpd.GeoDataFrame, path: str | os.PathLike, store: Store | None = None) -> None:
    """Draw search results (``query.search.search``) coloured by distance, the query cells outlined."""
    query = results.attrs.get("query_cells", [])
    draw_cells(
        results,
        path,
        column="distance",
        title=f"the {len(results)} cells most similar to {', '.join(grid.hex_id(c) for c in query)} (red)",
        caption="cosine distance to the query",
        store=store,
        highlight=query,
    )


def predictions_map(
    predictions: pa.Table,
    path: str | os.PathLike,
    *,
    classes: list[str] | None = None,
    store: Store | None = None,
) -> None:
    """Draw a head's predictions (``h3``, ``label``, ``score``, ``probabilities``).

    With two ``classes`` the cells are coloured by the probability of the second; otherwise by the score of
    the predicted label (the label shows in the HTML tooltips).
    """
    cells = predictions[H3_COLUMN].to_numpy()
    frame = gpd.GeoDataFrame(
        {
            H3_COLUMN: cells,
            "label": predictions["label"].to_pylist(),
            "score": predictions["score"].to_numpy(),
        },
        geometry=grid.cell_geometries(cells),
        crs=WGS84,
    )
    column, caption = "score", "probability of the predicted label"
    if classes is not None and len(classes) == 2:
        column = f"P({classes[1]})"
        probabilities = predictions["probabilities"].combine_chunks()
        frame[column] = probabilities.values.to_numpy().reshape(len(frame), 2)[:, 1]
        caption = f"probability of {classes[1]!r} (against {classes[0]!r})"
    counts = frame["label"].value_counts()
    title = "head predictions: " + ", ".join(f"{label} {count}" for label, count in counts.items())
    draw_cells(frame, path, column=column, title=title, caption=caption, store=store)


def _bounds(cells: gpd.GeoDataFrame, outlines: gpd.GeoSeries) -> tuple[float, float, float, float]:
    """The lon/lat bounds of everything drawn, with a margin of 5 %; a small box when nothing is drawn."""
    shapes = [g for g in [*cells.geometry, *outlines] if g is not None and not g.is_empty]
    if not shapes:
        raise InputError("nothing to draw: no cells and no highlighted cells")
    west, south, east, north = shapely.total_bounds(shapes)
    margin = max(east - west, north - south, 1e-4) * 0.05
    return west - margin, south - margin, east + margin, north + margin


def _colours(values: np.ndarray) -> tuple[list[str], tuple[float, float], list[str]]:
    """Hex colours of ``values`` (grey where missing), their range, and the colour ramp for a legend."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize, to_hex

    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ramp = colormaps[COLOURMAP]
    scaled = Normalize(low, high if high > low else low + 1e-12)(values)
    colours = [to_hex(ramp(v)) if np.isfinite(v) else "#888888" for v in np.ma.filled(scaled, np.nan)]
    return colours, (low, high), [to_hex(ramp(t)) for t in np.linspace(0, 1, 9)]


def _backdrop(store: Store | None, crs: str, bounds: tuple[float, float, float, float]) -> np.ndarray | None:
    """The store's imagery over ``bounds`` (in ``crs``) as RGBA, or None (no store, no imagery there)."""
    if store is None:
        return None
    from geolink_store.app.imagery import StoreImagery

    return StoreImagery(store).read(crs, bounds, BACKDROP_PIXELS)


def _draw_png(
    target: Path,
    cells: gpd.GeoDataFrame,
    values: np.ndarray,
    outlines: gpd.GeoSeries,
    bounds: tuple[float, float, float, float],
    *,
    title: str,
    caption: str,
    store: Store | None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    west, south, east, north = bounds
    colours, (low, high), _ = _colours(values)
    figure, ax = plt.subplots(figsize=(8, 7), constrained_layout=True)
    backdrop = _backdrop(store, WGS84, bounds)
    if backdrop is not None:
        ax.imshow(backdrop, extent=(west, east, south, north), interpolation="bilinear")
    if len(cells):
        cells.plot(
            ax=ax,
            color=colours,
            alpha=0.6 if backdrop is not None else 0.9,
            edgecolor="#ffffff",
            linewidth=0.3,
        )
    if len(outlines):
        outlines.boundary.plot(ax=ax, color=HIGHLIGHT, linewidth=2)
    scale = ScalarMappable(Normalize(low, high if high > low else low + 1e-12), COLOURMAP)
    figure.colorbar(scale, ax=ax, label=caption, shrink=0.8)
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    ax.set_aspect(1 / np.cos(np.radians((south + north) / 2)))
    ax.set_title(title + ("" if backdrop is not None else " (no imagery)"), fontsize=10)
    ax.tick_params(labelsize=7)
    ax.ticklabel_format(useOffset=False)
    figure.savefig(target, dpi=110)
    plt.close(figure)


def _draw_html(
    target: Path,
    cells: gpd.GeoDataFrame,
    values: np.ndarray,
    outlines: gpd.GeoSeries,
    bounds: tuple[float, float, float, float],
    *,
    column: str,
    title: str,
    caption: str,
    store: Store | None,
) -> None:
    from geolink_store.app.assets import inline_leaflet, page
    from geolink_store.app.imagery import png_bytes

    colours, (low, high), ramp = _colours(values)
    properties = {name: cells[name] for name in cells.columns if _scalar(cells[name])}
    properties.pop("h3_hex", None)
    properties[H3_COLUMN] = [grid.hex_id(c) for c in cells[H3_COLUMN]]  # hex: JSON numbers lose digits
    properties["colour"] = colours
    features = gpd.GeoDataFrame(properties, geometry=cells.geometry.values, crs=WGS84)
    west, south, east, north = bounds
    imagery = None
    mercator = gpd.GeoSeries([shapely.box(*bounds)], crs=WGS84).to_crs(WEB_MERCATOR).total_bounds
    backdrop = _backdrop(store, WEB_MERCATOR, tuple(mercator))
    if backdrop is not None:
        imagery = "data:image/png;base64," + base64.b64encode(png_bytes(backdrop)).decode("ascii")
    data = {
        "title": title,
        "caption": caption,
        "column": column,
        "range": [low, high],
        "ramp": ramp,
        "bounds": [[south, west], [north, east]],
        "cells": json.loads(features.to_json(na="null")),
        "highlight": json.loads(outlines.to_json()),
        "imagery": imagery,
        "note": "" if imagery else "no imagery drawn (no store given, or it records none here)",
    }
    css, js = inline_leaflet()
    html = (
        page("static_map.html")
        .replace("/*LEAFLET_CSS*/", css)
        .replace("/*LEAFLET_JS*/", js)
        .replace("/*MAP_DATA*/null", json.dumps(data).replace("</", "<\\/"))
        .replace("<!--TITLE-->", _escape(title))
    )
    target.write_text(html, encoding="utf-8")


def _scalar(column: pd.Series) -> bool:
    """Whether a column can show in a tooltip: numbers, booleans or text (not geometry, not vectors)."""
    if isinstance(column.dtype, gpd.array.GeometryDtype):
        return False
    return column.dtype.kind in "biuf" or column.map(lambda value: isinstance(value, str)).all()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
