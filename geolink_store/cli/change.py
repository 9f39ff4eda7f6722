"""``geolink change`` and ``geolink disagree``: cells ranked by change between epochs, or by conflict."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from geolink_store.cli.options import db_option, epoch_option, format_option, model_option
from geolink_store.constants import MODALITIES

if TYPE_CHECKING:
    import geopandas as gpd

    from geolink_store.store import Store

within_option = click.option("--within", help="W,S,E,N bbox in degrees, or a polygon file: cells inside.")
k_option = click.option("--k", type=click.IntRange(min=1), help="Keep the K highest scores (default: all).")
map_option = click.option(
    "--map", "map_path", type=click.Path(dir_okay=False), help="Also draw the scores (.png or .html)."
)


@click.command(epilog="Example: geolink change --db store --from 2010 --to 2020 --k 20 --map change.png")
@db_option
@click.option("--from", "epoch_from", required=True, help="The earlier epoch.")
@click.option("--to", "epoch_to", required=True, help="The later epoch.")
@click.option("--modality", type=click.Choice(MODALITIES), default="image", show_default=True)
@within_option
@k_option
@model_option
@format_option(("table", "json", "geojson"))
@map_option
def change(
    db: str,
    epoch_from: str,
    epoch_to: str,
    modality: str,
    within: str | None,
    k: int | None,
    model_id: str | None,
    fmt: str,
    map_path: str | None,
) -> None:
    """Rank the cells of two epochs by how much they changed, relative to the change around them."""
    from geolink_store.query.change import change_scores

    store = _store_for(db, map_path)
    ranked = change_scores(
        store, epoch_from, epoch_to, modality=modality, model_id=model_id, within=within, k=k
    )
    title = f"change {epoch_from} -> {epoch_to} ({modality} vectors)"
    _report(ranked, ["h3", "h3_hex", "score", "distance", "lon", "lat"], fmt, map_path, store, title)


@click.command(epilog="Example: geolink disagree --db store --k 20 --format json")
@db_option
@click.option(
    "--direction",
    type=click.Choice(["image", "map"]),
    default="image",
    show_default=True,
    help="image: the image shows more than the map has (unmapped); map: the map more than the image.",
)
@epoch_option
@within_option
@k_option
@model_option
@format_option(("table", "json", "geojson"))
@map_option
def disagree(
    db: str,
    direction: str,
    epoch: str | None,
    within: str | None,
    k: int | None,
    model_id: str | None,
    fmt: str,
    map_path: str | None,
) -> None:
    """Rank cells by how much more their image shows than their OSM has (or, --direction map, the reverse)."""
    from geolink_store.query.disagree import disagreement

    store = _store_for(db, map_path)
    ranked = disagreement(store, direction=direction, epoch=epoch, model_id=model_id, within=within, k=k)
    columns = ["h3", "h3_hex", "score", "n_point", "n_line", "n_polygon", "n_polygon_predicted"]
    title = (
        "the image shows more than the map" if direction == "image" else "the map shows more than the image"
    )
    _report(ranked, columns, fmt, map_path, store, title)


def _store_for(db: str, map_path: str | None) -> Store:
    """The store, opened once ``--map`` (when given) is known to be writable as a map."""
    from geolink_store.query.maps import check_map_path
    from geolink_store.store import Store

    if map_path:
        check_map_path(map_path)
    return Store.open(db)


def _report(
    ranked: gpd.GeoDataFrame, columns: list[str], fmt: str, map_path: str | None, store: Store, title: str
) -> None:
    """Draw the map (when asked), then print the ranked cells."""
    if map_path:
        from geolink_store.query.maps import draw_cells

        top = ranked["h3"].to_numpy()[: max(1, min(10, len(ranked) // 10))]
        draw_cells(ranked, map_path, column="score", title=title, caption="score", store=store, highlight=top)
        click.echo(f"map written to {map_path}", err=True)
    if fmt == "json":
        click.echo(json.dumps(ranked[columns].to_dict(orient="records"), default=float))
    elif fmt == "geojson":
        click.echo(ranked.to_json())
    else:
        click.echo(ranked[columns].to_string(index=False))
