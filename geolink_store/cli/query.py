"""``geolink search``, ``geolink sql`` and ``geolink export``: read the store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geolink_store.cli.options import db_option, format_option, model_option
from geolink_store.constants import MODALITIES
from geolink_store.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa


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
@model_option
@format_option(("table", "json", "geojson"))
@click.option(
    "--map", "map_path", type=click.Path(dir_okay=False), help="Also write an HTML map of the results."
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
    model_id: str | None,
    fmt: str,
    map_path: str | None,
) -> None:
    """Find the stored cells most similar to a cell, a point or the features of a file."""
    from geolink_store.query.search import search as run_search
    from geolink_store.store import Store

    point = None
    if lonlat is not None:
        try:
            lon, lat = (float(value) for value in lonlat.split(","))
        except ValueError as error:
            raise InputError(f"--lonlat must be LON,LAT in degrees, got {lonlat!r}") from error
        point = (lon, lat)
    results = run_search(
        Store.open(db),
        cells=cell,
        lonlat=point,
        like_file=like_file,
        modality=modality,
        k=k,
        within=within,
        parent=parent,
        model_id=model_id,
    )
    if map_path:
        from geolink_store.query.maps import results_map

        results_map(results, map_path)
        click.echo(f"map written to {map_path}", err=True)
    columns = ["h3", "h3_hex", "distance", "lon", "lat", "model_id"]
    if fmt == "json":
        _echo_json(results[columns].to_dict(orient="records"))
    elif fmt == "geojson":
        click.echo(results.to_json())
    else:
        click.echo(results[columns].to_string(index=False))


@click.command(epilog='Example: geolink sql --db store "SELECT h3_r7, count(*) FROM cells GROUP BY 1"')
@db_option
@click.argument("query")
@format_option(("table", "json", "csv"))
@click.option(
    "--file",
    "files",
    multiple=True,
    metavar="NAME=PATH",
    help="Load a vector file (GeoJSON, GPKG, ...) as table NAME; repeatable.",
)
@click.option("--write", is_flag=True, help="Allow statements that change the store.")
def sql(db: str, query: str, fmt: str, files: tuple[str, ...], write: bool) -> None:
    """Run DuckDB SQL over the store's tables (read-only unless --write)."""
    from geolink_store.query.sql import run_sql

    named = {}
    for item in files:
        name, _, path = item.partition("=")
        if not name or not path:
            raise InputError(f"--file takes NAME=PATH, got {item!r}")
        named[name] = path
    rows = run_sql(db, query, write=write, files=named)
    if fmt == "json":
        _echo_json(rows.to_pylist())
    elif fmt == "csv":
        _write_csv(rows)
    else:
        click.echo(rows.to_pandas().to_string(index=False) if rows.num_columns else "")


def _write_csv(rows: pa.Table) -> None:
    import pyarrow as pa

    frame = rows.to_pandas()
    for name, kind in zip(rows.column_names, rows.schema.types, strict=True):
        if pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind):
            frame[name] = [
                json.dumps(None if value is None else list(map(float, value))) for value in frame[name]
            ]
    frame.to_csv(sys.stdout, index=False)


@click.command()
@db_option
@click.option("--table", default="cells", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .parquet (GeoParquet).")
@click.option("--model", "model_id", help="Only this model's rows.")
def export(db: str, table: str, out: str, model_id: str | None) -> None:
    """Write a table to GeoParquet (EPSG:4326)."""
    from geolink_store.query.export import export_table
    from geolink_store.store import Store

    rows = export_table(Store.open(db), table, Path(out), model_id=model_id)
    click.echo(f"wrote {rows} rows to {out}", err=True)
