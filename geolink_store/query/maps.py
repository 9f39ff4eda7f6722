"""Folium maps of search results: hexagons coloured by distance, the query cells outlined in red."""

from __future__ import annotations

import os

import branca.colormap
import folium
import geopandas as gpd
import pyarrow as pa

from geolink_store import grid
from geolink_store.constants import WGS84

QUERY_STYLE = {"color": "#d7191c", "weight": 3, "fillOpacity": 0.0}


def results_map(results: gpd.GeoDataFrame, path: str | os.PathLike) -> folium.Map:
    """Draw ``geolink_store.query.search.search`` results into an HTML file.

    The query cells (``attrs["query_cells"]``) are drawn as well.
    """
    query = gpd.GeoDataFrame(
        {"h3": results.attrs.get("query_cells", [])},
        geometry=grid.cell_geometries(results.attrs.get("query_cells", [])),
        crs=WGS84,
    )
    everything = gpd.GeoSeries(list(results.geometry) + list(query.geometry), crs=WGS84)
    west, south, east, north = everything.total_bounds
    folium_map = folium.Map(tiles=None)
    folium_map.fit_bounds([[south, west], [north, east]])
    if len(results):
        low, high = float(results["distance"].min()), float(results["distance"].max())
        colours = branca.colormap.linear.viridis.scale(low, high if high > low else low + 1e-9)
        colours.caption = "cosine distance to the query"
        shown = results[["h3_hex", "distance", "geometry"]]
        folium.GeoJson(
            shown.to_json(),
            name="results",
            style_function=lambda feature: {
                "fillColor": colours(feature["properties"]["distance"]),
                "color": "#333333",
                "weight": 1,
                "fillOpacity": 0.7,
            },
            tooltip=folium.GeoJsonTooltip(["h3_hex", "distance"]),
        ).add_to(folium_map)
        colours.add_to(folium_map)
    if len(query):
        folium.GeoJson(query.to_json(), name="query", style_function=lambda feature: QUERY_STYLE).add_to(
            folium_map
        )
    folium.LayerControl().add_to(folium_map)
    folium_map.save(str(path))
    return folium_map


def predictions_map(predictions: pa.Table, path: str | os.PathLike) -> None:
    """Draw a head's predictions (``h3``, ``label``, ``score``).

    The map is a PNG (matplotlib) or an HTML map (folium).
    """
    frame = gpd.GeoDataFrame(
        {
            "h3_hex": [f"{c:x}" for c in predictions["h3"].to_pylist()],
            "label": predictions["label"].to_pylist(),
            "score": predictions["score"].to_pylist(),
        },
        geometry=grid.cell_geometries(predictions["h3"].to_pylist()),
        crs=WGS84,
    )
    if str(path).lower().endswith(".png"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, ax = plt.subplots(figsize=(8, 7), constrained_layout=True)
        frame.plot(ax=ax, column="label", categorical=True, legend=True, edgecolor="#333333", linewidth=0.3)
        ax.set_title("head predictions")
        ax.ticklabel_format(useOffset=False)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return
    folium_map = folium.Map(tiles=None)
    west, south, east, north = frame.total_bounds
    folium_map.fit_bounds([[south, west], [north, east]])
    folium.GeoJson(
        frame.to_json(),
        name="predictions",
        style_function=lambda feature: {
            "fillColor": _colour(feature["properties"]["label"]),
            "color": "#333333",
            "weight": 1,
            "fillOpacity": 0.7,
        },
        tooltip=folium.GeoJsonTooltip(["h3_hex", "label", "score"]),
    ).add_to(folium_map)
    folium_map.save(str(path))


def _colour(label: str) -> str:
    palette = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
    return palette[sum(map(ord, label)) % len(palette)]
