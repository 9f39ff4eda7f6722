"""Error handling shared by every command group: a GeolinkError is one `error:` line, in flags."""

from __future__ import annotations

import re
from typing import Any

import click

from geolink_store.errors import GeolinkError

KEYWORD_FLAGS = {"cells": "--cell", "location": "--db", "labels": "--labels"}
"""Library keywords whose flag is not the keyword itself with dashes (the rest come from each command's
params)."""

_KEYWORD = re.compile(r"\b([a-z][a-z0-9_]*)=")


class OneLineErrors(click.Group):
    """A click group whose commands report a GeolinkError as one ``error:`` line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:  # noqa: ANN401 (whatever the command returns)
        """Run the command, turning a GeolinkError into ``error: <message>`` and exit code 1."""
        try:
            return super().invoke(ctx)
        except GeolinkError as error:
            message = " ".join(str(error).split()) or type(error).__name__
            command = self.get_command(ctx, ctx.invoked_subcommand or "")
            click.echo(f"error: {_as_flags(message, command or self)}", err=True)
            ctx.exit(1)


def _as_flags(message: str, command: click.Command) -> str:
    """``message`` with each ``keyword=`` the command has a flag for written as that flag."""
    flags = {
        param.name: max(param.opts, key=len)
        for param in command.params
        if isinstance(param, click.Option) and param.name
    }

    def flag(match: re.Match[str]) -> str:
        keyword = match.group(1)
        found = flags.get(keyword) or KEYWORD_FLAGS.get(keyword)
        if not found:
            return match.group(0)
        value_follows = match.end() < len(message) and (
            message[match.end()].isalnum() or message[match.end()] in "'\""
        )
        return f"{found} " if value_follows else found

    return _KEYWORD.sub(flag, message)
