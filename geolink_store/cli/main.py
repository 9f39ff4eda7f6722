"""The ``geolink`` command line: thin commands over the library; JSON on stdout, messages on stderr.

Every command added to :func:`main` (``@main.command()``) shares one error handler: a GeolinkError, or an
error DuckDB or Lance raise about the user's input, becomes one line ``error: ...`` on stderr and exit code 1
(click's own usage errors exit with 2); no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import duckdb
import pyarrow as pa

from geolink_store.cli.heads import heads_group
from geolink_store.cli.ingest import demo_command, ingest_command
from geolink_store.cli.pretrain import pretrain_command
from geolink_store.errors import GeolinkError
from geolink_store.store.store import INDEX_MIN_ROWS, Store

FORMATS = click.Choice(["table", "json"])


class GeolinkGroup(click.Group):
    """A click group whose commands report user errors as one line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning expected errors into ``error: <message>`` and exit code 1."""
        try:
            return super().invoke(ctx)
        except (GeolinkError, duckdb.Error, ValueError, OSError) as error:
            message = " ".join(str(error).split()) or type(error).__name__
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


@click.group(cls=GeolinkGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="geolink-store")
def main() -> None:
    """geolink: H3-indexed GeoLink embeddings of imagery and OpenStreetMap in LanceDB, queried with DuckDB."""


def _open(db: str) -> Store:
    return Store.open(db)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str))


@main.command(
    epilog="Example: geolink search --db store --lonlat 32.58,0.32 --k 5 --within 32.5,0.2,32.7,0.4"
)
@click.option("--db", required=True, help="Store: a directory or an s3://, gs://, az:// URI.")
@click.option("--cell", help="H3 cell(s), hex or integer, comma-separated (averaged into one query).")
@click.option("--lonlat", help="LON,LAT in degrees: the store cell containing the point.")
@click.option(
    "--like-file", type=click.Path(dir_okay=False), help="GeoJSON whose features' cells are averaged."
)
@click.option("--modality", type=click.Choice(["image", "osm", "fused"]), default="fused", show_default=True)
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--within", help="W,S,E,N bbox in degrees, or a polygon file: cells whose centre lies inside.")
@click.option("--parent", help="Only descendants of this coarser H3 cell.")
@click.option("--model", "model_id", help="Model id (default: the store's only model).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "geojson"]), default="table", show_default=True
)
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

    point = None
    if lonlat is not None:
        try:
            lon, lat = (float(value) for value in lonlat.split(","))
        except ValueError as error:
            raise GeolinkError(f"--lonlat must be LON,LAT in degrees, got {lonlat!r}") from error
        point = (lon, lat)
    results = run_search(
        _open(db),
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


@main.command(epilog='Example: geolink sql --db store "SELECT h3_r7, count(*) FROM cells GROUP BY 1"')
@click.option("--db", required=True, help="Store: a directory or an s3://, gs://, az:// URI.")
@click.argument("query")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
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
            raise GeolinkError(f"--file takes NAME=PATH, got {item!r}")
        named[name] = path
    rows = run_sql(db, query, write=write, files=named)
    if fmt == "json":
        _echo_json(rows.to_pylist())
    elif fmt == "csv":
        _write_csv(rows)
    else:
        click.echo(rows.to_pandas().to_string(index=False) if rows.num_columns else "")


def _write_csv(rows: pa.Table) -> None:
    frame = rows.to_pandas()
    for name, kind in zip(rows.column_names, rows.schema.types, strict=True):
        if pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind):
            frame[name] = [
                json.dumps(None if value is None else list(map(float, value))) for value in frame[name]
            ]
    frame.to_csv(sys.stdout, index=False)


@main.command()
@click.option("--db", required=True, help="Store: a directory or an s3://, gs://, az:// URI.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def info(db: str, fmt: str) -> None:
    """Tables, rows, models, vector widths, index state and size on disk."""
    summary = _open(db).info()
    if fmt == "json":
        _echo_json(summary)
        return
    click.echo(f"store {summary['path']}  ({summary['size_bytes'] / 2**20:.1f} MiB)")
    for name, table in summary["tables"].items():
        vectors = ", ".join(f"{column}[{width}]" for column, width in table["vectors"].items()) or "-"
        click.echo(
            f"  {name}: {table['rows']} rows, search {table['search']}, vectors {vectors}, "
            f"models {', '.join(table['models']) or '-'}"
        )
    for model in summary["models"]:
        click.echo(f"  model {model['model_id']}: {model['name']} ({model['architecture']})")


@main.command()
@click.option("--db", required=True, help="Store: a directory or an s3://, gs://, az:// URI.")
@click.option("--table", default="cells", show_default=True)
@click.option(
    "--min-rows",
    type=click.IntRange(min=0),
    default=None,
    help="Build even below the automatic threshold (default: the store's threshold).",
)
def index(db: str, table: str, min_rows: int | None) -> None:
    """Build or refresh the ANN indexes of a table's vector columns."""
    built = _open(db).build_indexes(table, min_rows=INDEX_MIN_ROWS if min_rows is None else min_rows)
    click.echo(
        f"indexed {', '.join(built)}" if built else "nothing to index (below threshold or up to date)",
        err=True,
    )


@main.command()
@click.option("--db", required=True, help="Store: a directory or an s3://, gs://, az:// URI.")
@click.option("--table", default="cells", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .parquet (GeoParquet).")
@click.option("--model", "model_id", help="Only this model's rows.")
def export(db: str, table: str, out: str, model_id: str | None) -> None:
    """Write a table to GeoParquet (EPSG:4326)."""
    from geolink_store.query.export import export_table

    rows = export_table(_open(db), table, Path(out), model_id=model_id)
    click.echo(f"wrote {rows} rows to {out}", err=True)


for _command in (ingest_command, demo_command, heads_group, pretrain_command):
    main.add_command(_command)
