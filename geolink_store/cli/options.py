"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

db_option = click.option("--db", required=True, help="Store: a directory or an s3://, gs://, az:// URI.")
model_option = click.option("--model", "model_id", help="Model id (default: the store's only model).")


def format_option(choices: Sequence[str] = ("table", "json")) -> Callable[[F], F]:
    """``--format`` with the given choices, the first being the default."""
    return click.option(
        "--format", "fmt", type=click.Choice(list(choices)), default=choices[0], show_default=True
    )
