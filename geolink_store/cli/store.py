"""``geolink info``, ``index``, ``optimize``, ``check``, ``restore``: the store's state, upkeep and repair."""

from __future__ import annotations

import json

import click

from geolink_store.cli.options import db_option, format_option


@click.command()
@db_option
@format_option()
def info(db: str, fmt: str) -> None:
    """Tables, rows, models, vector widths and layout, index state and size on disk."""
    from geolink_store.store import Store

    summary = Store.open(db).info()
    if fmt == "json":
        click.echo(json.dumps(summary, default=str))
        return
    click.echo(f"store {summary['path']}  ({summary['size_bytes'] / 2**20:.1f} MiB)")
    for name, table in summary["tables"].items():
        vectors = ", ".join(f"{column}[{width}]" for column, width in table["vectors"].items()) or "-"
        click.echo(
            f"  {name}: {table['rows']} rows, search {table['search']}, vectors {vectors}"
            + (f" ({table['layout']})" if "layout" in table else "")
            + f", models {', '.join(table['models']) or '-'}"
            + (f", epochs {', '.join(table['epochs']) or '-'}" if "epochs" in table else "")
        )
        click.echo(
            f"    version {table['version']} ({table['versions']} kept), {table['fragments']} fragments, "
            f"{table['size_bytes'] / 2**20:.1f} MiB, indexes {_indexes(table['indexes'])}"
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


@click.command()
@db_option
@click.option("--keep-versions", type=click.IntRange(min=1), help="Keep the N newest versions of each table.")
@click.option("--older-than", help="Remove the versions older than this (90s, 30m, 12h, 1d, 2w).")
@format_option()
def optimize(db: str, keep_versions: int | None, older_than: str | None, fmt: str) -> None:
    """Compact fragments, merge index segments and prune old versions of every table.

    By default the versions kept are those that cost no data of their own (see the README, "Store upkeep and
    recovery"); an ingest ends with the same.
    """
    from geolink_store.store import Store
    from geolink_store.store.upkeep import Retention, parse_duration

    retention = Retention(keep_versions, parse_duration(older_than) if older_than is not None else None)
    done = Store.open(db).optimize(retention)
    if fmt == "json":
        click.echo(json.dumps(done))
        return
    for name, change in done.items():
        before, after = change["before"], change["after"]
        click.echo(
            f"{name}: {before['size_bytes'] / 2**20:.1f} -> {after['size_bytes'] / 2**20:.1f} MiB, "
            f"versions {before['versions']} -> {after['versions']}, fragments {before['fragments']} -> "
            f"{after['fragments']}, index segments {before['index_segments']} -> {after['index_segments']}"
        )


@click.command()
@db_option
def check(db: str) -> None:
    """Verify every table: one line per problem and its recovery (exit 1), or none (exit 0)."""
    from geolink_store.store import Store

    store = Store.open(db)
    problems = store.check()
    for problem in problems:
        click.echo(str(problem))
    if problems:
        raise click.exceptions.Exit(1)
    click.echo(f"store {db}: {len(store.table_names())} tables, nothing wrong", err=True)


@click.command()
@db_option
@click.option("--table", required=True, help="The table to restore.")
@click.option("--version", type=click.IntRange(min=1), required=True, help="The version to restore.")
def restore(db: str, table: str, version: int) -> None:
    """Make an older version of a table its newest again (as geolink check suggests)."""
    from geolink_store.store import Store

    newest = Store.open(db).restore(table, version)
    click.echo(f"table {table}: version {version} restored as version {newest}", err=True)


def _indexes(indexes: dict[str, dict[str, object]]) -> str:
    return (
        ", ".join(
            f"{name} (segments {index['segments']}, unindexed rows {index['unindexed_rows']})"
            for name, index in indexes.items()
        )
        or "-"
    )
