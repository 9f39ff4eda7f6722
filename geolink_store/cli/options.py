"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import click

from geolink_store.constants import TABLES
from geolink_store.errors import InputError, StoreError

F = TypeVar("F", bound=Callable[..., object])

STORE_META = "geolink.store"
"""Key of ``click.Context.meta`` holding the ``--db`` given, which error lines name."""


def given_store(ctx: click.Context, _: click.Parameter | None, location: str) -> str:
    """``--db`` as given (a store that may not exist yet), refused when empty (an unset shell variable).

    It is recorded in ``ctx.meta`` for the error lines that name the store.
    """
    if not location.strip():
        raise InputError("--db is empty: give a store directory or an s3://, gs://, az:// URI")
    ctx.meta[STORE_META] = location
    return location


def existing_store(ctx: click.Context, _: click.Parameter, location: str) -> str:
    """``--db`` of a command that reads a store: a local folder must hold geolink tables.

    A missing folder, or an object-store URI (no local path), is left to ``Store.open``.
    """
    location = given_store(ctx, None, location)
    path = Path(location)
    if not path.exists():
        return location
    if not path.is_dir():
        raise StoreError(f"--db {location} is a file; a store is a directory")
    if not any((path / f"{table}.lance").is_dir() for table in TABLES):
        raise StoreError(
            f"--db {location} is not a geolink store (it holds none of the tables {', '.join(TABLES)}): "
            "pass the folder of a store, or ingest into it first"
        )
    return location


db_option = click.option(
    "--db", required=True, callback=existing_store, help="Store: a directory or an s3://, gs://, az:// URI."
)
model_option = click.option("--model", "model_id", help="Model id (default: the store's only model).")
epoch_option = click.option("--epoch", help="Epoch label (default: the latest; `geolink info` lists them).")


def format_option(choices: Sequence[str] = ("table", "json")) -> Callable[[F], F]:
    """``--format`` with the given choices, the first being the default."""
    return click.option(
        "--format", "fmt", type=click.Choice(list(choices)), default=choices[0], show_default=True
    )
