"""Error handling shared by every command group: a fault is one ``error:`` line, in flags.

The top-level group also hides the known third-party warnings (:mod:`geolink_store.cli.noise`) and makes
Ctrl-C end any command within seconds with exit code 130 (:mod:`geolink_store.cli.interrupt`). A closed pipe
is left to click, which ends quietly.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import click

from geolink_store.cli.environment import environment_message
from geolink_store.cli.interrupt import EXIT_CODE, InterruptWatch
from geolink_store.cli.noise import ignore_known_warnings
from geolink_store.cli.options import STORE_META
from geolink_store.errors import GeolinkError

KEYWORD_FLAGS = {"cells": "--cell", "location": "--db", "labels": "--labels"}
"""Library keywords whose flag is not the keyword itself with dashes (the rest come from each command's
params)."""

_KEYWORD = re.compile(r"\b([a-z][a-z0-9_]*)=")
_WATCH_META = "geolink.interrupt"


class OneLineErrors(click.Group):
    """A click group whose commands report a fault as one ``error:`` line on stderr and exit code 1.

    Faults are a :class:`GeolinkError` (bad input) and the machine's own (no permission, a full disk, an
    unreachable store: :func:`~geolink_store.cli.environment.environment_message`); anything else is a bug
    and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:  # noqa: ANN401 (whatever the command returns)
        """Run the command; at the top level, with known warnings hidden and Ctrl-C watched."""
        if ctx.parent is not None:
            return self._invoke_reporting(ctx)
        with warnings.catch_warnings(), InterruptWatch() as watch:
            ignore_known_warnings()
            ctx.meta[_WATCH_META] = watch
            result = self._invoke_reporting(ctx)
            if watch.interrupted.is_set():  # a library swallowed the KeyboardInterrupt
                watch.report()
                ctx.exit(EXIT_CODE)
            return result

    def _invoke_reporting(self, ctx: click.Context) -> Any:  # noqa: ANN401 (whatever the command returns)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except (Exception, KeyboardInterrupt) as error:
            watch = ctx.meta.get(_WATCH_META)
            if watch is not None and (isinstance(error, KeyboardInterrupt) or watch.interrupted.is_set()):
                watch.report()
                ctx.exit(EXIT_CODE)
            message = self._message(ctx, error)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)

    def _message(self, ctx: click.Context, error: BaseException) -> str | None:
        """The line for a fault, or None for a bug."""
        if not isinstance(error, GeolinkError):
            return environment_message(error, ctx.meta.get(STORE_META))
        message = " ".join(str(error).split()) or type(error).__name__
        command = self.get_command(ctx, ctx.invoked_subcommand or "")
        return _as_flags(message, command or self)


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
