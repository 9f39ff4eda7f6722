"""``geolink search``, ``geolink sql`` and ``geolink export``: read the store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from geolink_store.cli.options import db_option, epoch_option, format_option, model_option
from geolink_store.constants import MODALITIES
from geolink_store.errors import InputError


def _echo_json(value: Any) -> None:  # noqa: ANN401 (any JSON-serialisable value)
    click.echo(json.dumps(value, default=str))


@click.command(
    epilog="Example: geolink search --db store --lonlat 32.58,0.32 --k 5 --within 32.5,0.2,32.7,0.4"
)
@db_option
@click.option("--cell", help="H3 cell(s), hex or integer, comma-separated (averaged into one query).")
@click.option("--lonlat", help="LON,LAT in degrees: the store cell containing the point.")
@click.option(
    "--like-file", type=click.Path(dir_okay=False), help="GeoJSON whose features' cells are averaged."
)
@click.option("--modality", type=click.Choice(MODALITIES), default="fused", show_default=True)
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--within", help="W,S,E,N bbox in degrees, or a polygon file: cells whose centre lies inside.")
@click.option("--parent", help="Only descendants of this coarser H3 cell.")
@click.option(
    "--patches",
    "fine",
    is_flag=True,
    help="Compare the fine patches instead: each hit cell comes with its best patch (where the match is).",
)
@model_option
@epoch_option
@format_option(("table", "json", "geojson"))
@click.option(
    "--map",
    "map_path",
    type=click.Path(dir_okay=False),
    help="Also draw the results over the store's imagery: a .png, or an offline .html map.",
)
def search(
    db: str,
    cell: str | None,
    lonlat: str | None,
    like_file: str | None,
    modality: str,
    k: int,
    within: str | None,
    parent: str | None,
    fine: bool,
    model_id: str | None,
    epoch: str | None,
    fmt: str,
    map_path: str | None,
) -> None:
    """Find the stored cells most similar to a cell, a point or the features of a file."""
    from geolink_store.query.patch_search import search_patches
    from geolink_store.query.search import hits_frame, search_hits

    if map_path:  # maps (geopandas, LanceDB) load only when a map is asked for
        from geolink_store.query.maps import check_map_path

        check_map_path(map_path)
    point = None
    if lonlat is not None:
        try:
            lon, lat = (float(value) for value in lonlat.split(","))
        except ValueError as error:
            raise InputError(f"--lonlat must be LON,LAT in degrees, got {lonlat!r}") from error
        point = (lon, lat)
    hits = (search_patches if fine else search_hits)(
        db,
        cells=cell,
        lonlat=point,
        like_file=like_file,
        modality=modality,
        k=k,
        within=within,
        parent=parent,
        model_id=model_id,
        epoch=epoch,
    )
    if map_path:
        from geolink_store.query.maps import results_map
        from geolink_store.store import Store

        results_map(hits_frame(hits), map_path, store=Store.open(db))
        click.echo(f"map written to {map_path}", err=True)
    columns = ["h3", "h3_hex", "distance", "lon", "lat", "model_id"]
    if fine:
        columns[-1:-1] = ["patch", "patch_hex", "patch_lon", "patch_lat"]
    if fmt == "json":
        _echo_json(hits.rows.select(columns).to_pylist())
    elif fmt == "geojson":
        click.echo(hits_frame(hits).to_json())
    else:
        shown = [hits.rows[name].to_pylist() for name in columns]
        click.echo(_text_table(columns, list(zip(*shown, strict=True))))


@click.command(epilog='Example: geolink sql --db store "SELECT h3_r7, count(*) FROM cells GROUP BY 1"')
@db_option
@click.argument("query")
@format_option(("table", "json", "csv"))
@click.option(
    "--file",
    "files",
    multiple=True,
    metavar="NAME=PATH",
    help="Load a vector file (GeoJSON, GPKG, ...) as table NAME (a plain SQL name); repeatable.",
)
@click.option("--write", is_flag=True, help="Allow statements that change the store.")
@click.option("--epoch", help="Show only this epoch's rows in cells, patches and predictions (default: all).")
def sql(db: str, query: str, fmt: str, files: tuple[str, ...], write: bool, epoch: str | None) -> None:
    """Run DuckDB SQL over the store's tables (read-only unless --write), with H3 functions."""
    from geolink_store.query.sql import SqlSession

    named = {}
    for item in files:
        name, _, path = item.partition("=")
        if not name or not path:
            raise InputError(f"--file takes NAME=PATH, got {item!r}")
        named[name] = path
    with SqlSession(db, write=write, files=named, prepare_for=query, epoch=epoch) as session:
        columns, rows = session.rows(query)
    if fmt == "json":
        _echo_json([dict(zip(columns, row, strict=True)) for row in rows])
    elif fmt == "csv":
        _write_csv(columns, rows)
    else:
        click.echo(_text_table(columns, rows))


def _write_csv(columns: list[str], rows: list[tuple]) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(json.dumps(value) if isinstance(value, list | tuple) else value for value in row)


def _text_table(columns: list[str], rows: list[tuple]) -> str:
    """Rows as right-aligned text columns (vectors shortened), without importing pandas."""
    if not columns:
        return ""
    cells = [columns, *([_cell_text(value) for value in row] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        " ".join(text.rjust(width) for text, width in zip(line, widths, strict=True)) for line in cells
    )


def _cell_text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        shown = [_cell_text(item) for item in (value if len(value) <= 6 else [*value[:3], *value[-2:]])]
        return "[" + ", ".join(shown[:3] + ["..."] + shown[3:] if len(value) > 6 else shown) + "]"
    return "NULL" if value is None else str(value)


@click.command(
    epilog="Example: geolink zonal --db store --zones districts.geojson --modality fused --out zonal.parquet"
)
@db_option
@click.option(
    "--zones",
    required=True,
    type=click.Path(dir_okay=False),
    help="Polygons (GeoJSON, GPKG, ...): one row each.",
)
@click.option("--modality", type=click.Choice(MODALITIES), default="fused", show_default=True)
@click.option("--stats", default="mean,std", show_default=True, help="Comma-separated: mean, std.")
@click.option(
    "--res", type=int, help="Weigh cells by the coverage of their parents at this coarser resolution."
)
@model_option
@epoch_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .parquet (GeoParquet).")
def zonal(
    db: str,
    zones: str,
    modality: str,
    stats: str,
    res: int | None,
    model_id: str | None,
    epoch: str | None,
    out: str,
) -> None:
    """Per zone: its cells' count and area-weighted mean/std vector, as GeoParquet."""
    from geolink_store.query.zonal import write_zonal_stats
    from geolink_store.store import Store

    written = write_zonal_stats(
        Store.open(db),
        zones,
        out,
        modality=modality,
        stats=[name.strip() for name in stats.split(",") if name.strip()],
        res=res,
        model_id=model_id,
        epoch=epoch,
    )
    click.echo(f"wrote {written} zones to {out}", err=True)


@click.command()
@db_option
@click.option("--table", default="cells", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .parquet (GeoParquet).")
@click.option("--model", "model_id", help="Only this model's rows.")
@click.option("--epoch", help="Only this epoch's rows (default: all).")
def export(db: str, table: str, out: str, model_id: str | None, epoch: str | None) -> None:
    """Write a table to GeoParquet (EPSG:4326)."""
    from geolink_store.query.export import export_table
    from geolink_store.store import Store

    rows = export_table(Store.open(db), table, Path(out), model_id=model_id, epoch=epoch)
    click.echo(f"wrote {rows} rows to {out}", err=True)
