"""The README's main job.

Ingest the bundled Kampala sample with the default model, search it, query it, draw it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
import geopandas as gpd
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from pyproj import CRS

from geolink_store.chips import ChipSpec
from geolink_store.constants import WGS84
from geolink_store.grid import cell_geometries
from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.query.maps import results_map
from geolink_store.query.search import search
from geolink_store.query.sql import run_sql
from geolink_store.sample import SampleRegion, kampala_sample
from geolink_store.sources.mosaic import open_imagery
from geolink_store.store.store import Store

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

ROLLUP_SQL = """
SELECT lower(hex(h3_r10)) AS parent_r10, count(*) AS cells, sum(n_polygon) AS building_parts,
       round(avg(list_cosine_similarity(fused, (SELECT fused FROM cells WHERE h3 = {query}))), 3)
           AS mean_similarity
FROM cells GROUP BY h3_r10 ORDER BY mean_similarity DESC
"""


def run_demo(out: Path, progress: Callable[[int], Callable[[int], None]]) -> None:
    """Ingest the sample into ``out/store``, then print a search and a SQL rollup and write two maps."""
    sample = kampala_sample()
    out.mkdir(parents=True, exist_ok=True)
    db = out / "store"
    click.echo(
        f"1. ingest: Kampala sample ({sample.imagery.name}/, {sample.osm.name}) at H3 res {sample.res} "
        "with the bundled default model (GeoLink, EfficientNet-Lite2 image encoder)",
        err=True,
    )
    report = ingest(
        str(db),
        sample.region,
        [str(sample.imagery)],
        str(sample.osm),
        settings=IngestSettings(res=sample.res, fine_res=sample.fine_res),
        progress=progress,
    )
    store = Store.open(db)
    cells = store.table("cells").to_arrow().to_pandas()
    click.echo(
        f"   {len(cells)} cells in {db} ({report.cells_encoded} encoded now, "
        f"{report.cells_already_stored} already stored), {store.table('patches').count_rows()} patch rows"
    )

    query = int(cells.loc[cells["n_polygon"].idxmax(), "h3"])
    results = search(store, cells=query, modality="fused", k=5)
    click.echo(
        f"\n2. search: the 5 cells most like {results.attrs['query_cells'][0]:x} (the most built-up cell), "
        "by fused image+OSM vectors"
    )
    click.echo(results[["h3_hex", "distance", "lon", "lat"]].to_string(index=False))
    results_map(results, out / "search_map.html", store=store)

    click.echo(
        "\n3. SQL (DuckDB): cells per res-10 parent, building parts, mean similarity to the query cell"
    )
    click.echo(run_sql(db, ROLLUP_SQL.format(query=query)).to_pandas().to_string(index=False))

    png = out / "similarity_map.png"
    draw_similarity(cells, query, sample, png)
    click.echo(f"\nmaps: {out / 'search_map.html'} (interactive), {png}")
    click.echo(f"explorer: geolink serve --db {db}   then open http://127.0.0.1:8000 in a browser")
    click.echo(
        f"data: {sample.attribution.read_text().splitlines()[0].lstrip('# ')} (see {sample.attribution})"
    )


def draw_similarity(cells: pd.DataFrame, query: int, sample: SampleRegion, path: Path) -> None:
    """Draw every cell coloured by cosine similarity of its fused vector to ``query``.

    The cells are drawn over the sample's imagery and buildings.
    """
    fused = np.stack(cells["fused"].to_numpy())
    fused /= np.linalg.norm(fused, axis=1, keepdims=True)
    similarity = fused @ fused[cells.index[cells["h3"] == query][0]]
    hexagons = gpd.GeoDataFrame({"similarity": similarity}, geometry=cell_geometries(cells["h3"]), crs=WGS84)
    buildings = gpd.read_file(sample.osm)
    west, south, east, north = hexagons.total_bounds

    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5), constrained_layout=True)
    for ax in axes:
        _imagery_background(ax, sample, (west, south, east, north))
    buildings.boundary.plot(ax=axes[0], color="#ffdd00", linewidth=0.8)
    hexagons.boundary.plot(ax=axes[0], color="white", linewidth=0.4)
    axes[0].set_title("imagery, OSM buildings (yellow), H3 res-12 cells")
    hexagons.plot(
        ax=axes[1],
        column="similarity",
        cmap="viridis",
        alpha=0.75,
        legend=True,
        legend_kwds={"label": "cosine similarity (fused) to the query cell", "shrink": 0.8},
    )
    gpd.GeoSeries(cell_geometries([query]), crs=WGS84).boundary.plot(ax=axes[1], color="red", linewidth=2)
    axes[1].set_title("similarity to the query cell (red)")
    for ax in axes:
        ax.set_xlim(west, east)
        ax.set_ylim(south, north)
        ax.set_aspect(1 / np.cos(np.radians((south + north) / 2)))
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(useOffset=False)
    figure.suptitle(
        "geolink demo: Kampala sample. Imagery OpenAerialMap (CC-BY-4.0); buildings (c) OpenStreetMap "
        "contributors (ODbL)",
        fontsize=9,
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _imagery_background(ax: Axes, sample: SampleRegion, bounds: tuple[float, float, float, float]) -> None:
    """The sample imagery resampled onto a lon/lat grid covering ``bounds``."""
    spec = ChipSpec(cell=0, crs=CRS.from_epsg(4326), bounds=bounds, size=512)
    chip = open_imagery(sample.imagery).read(spec)
    if chip is not None:
        ax.imshow(chip.rgb(), extent=(bounds[0], bounds[2], bounds[1], bounds[3]))
