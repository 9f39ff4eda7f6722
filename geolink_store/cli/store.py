"""``geolink info`` and ``geolink index``: the store's state and upkeep."""

from __future__ import annotations

import json

import click

from geolink_store.cli.options import db_option, format_option


@click.command()
@db_option
@format_option()
def info(db: str, fmt: str) -> None:
    """Tables, rows, models, vector widths, index state and size on disk."""
    from geolink_store.store import Store

    summary = Store.open(db).info()
    if fmt == "json":
        click.echo(json.dumps(summary, default=str))
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


@click.command()
@db_option
@click.option("--table", default="cells", show_default=True)
@click.option(
    "--min-rows",
    type=click.IntRange(min=0),
    default=None,
    help="Build even below the automatic threshold (default: the store's threshold).",
)
def index(db: str, table: str, min_rows: int | None) -> None:
    """Build or refresh the ANN indexes of a table's vector columns."""
    from geolink_store.store import INDEX_MIN_ROWS, Store

    built = Store.open(db).build_indexes(table, min_rows=INDEX_MIN_ROWS if min_rows is None else min_rows)
    click.echo(
        f"indexed {', '.join(built)}" if built else "nothing to index (below threshold or up to date)",
        err=True,
    )
