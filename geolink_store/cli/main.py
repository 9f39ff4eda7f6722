"""The ``geolink`` command line: thin commands over the library; JSON on stdout, messages on stderr.

Commands are loaded on first use, so ``geolink --help`` imports neither torch nor the store. Every command
shares one error handler: a :class:`~geolink_store.errors.GeolinkError` becomes one line ``error: ...`` on
stderr and exit code 1 (click's own usage errors exit with 2). Library messages name keyword arguments
(``model_id=``); the handler rewrites them as the command's flags (``--model``). Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import importlib

import click

from geolink_store.cli.group import OneLineErrors

COMMANDS = {
    "change": "geolink_store.cli.change:change",
    "check": "geolink_store.cli.store:check",
    "demo": "geolink_store.cli.ingest:demo_command",
    "disagree": "geolink_store.cli.change:disagree",
    "export": "geolink_store.cli.query:export",
    "heads": "geolink_store.cli.heads:heads_group",
    "index": "geolink_store.cli.store:index",
    "info": "geolink_store.cli.store:info",
    "ingest": "geolink_store.cli.ingest:ingest_command",
    "optimize": "geolink_store.cli.store:optimize",
    "pretrain": "geolink_store.cli.pretrain:pretrain_command",
    "restore": "geolink_store.cli.store:restore",
    "search": "geolink_store.cli.query:search",
    "serve": "geolink_store.cli.serve:serve",
    "sql": "geolink_store.cli.query:sql",
    "zonal": "geolink_store.cli.query:zonal",
}
"""Command name -> ``module:attribute`` of its click command."""


class GeolinkGroup(OneLineErrors):
    """The top-level group: commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, sorted."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the command's module on first use."""
        if cmd_name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[cmd_name].partition(":")
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=GeolinkGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="geolink-store")
def main() -> None:
    """geolink: H3-indexed GeoLink embeddings of imagery and OpenStreetMap in LanceDB, queried with DuckDB."""
