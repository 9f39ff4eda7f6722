"""``geolink serve``: the explorer, a local web app over one store."""

from __future__ import annotations

import click

from geolink_store.cli.options import db_option, epoch_option, model_option

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@click.command(epilog="Example: geolink serve --db demo/store   (then open http://127.0.0.1:8000)")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@model_option
@epoch_option
def serve(db: str, host: str, port: int, model_id: str | None, epoch: str | None) -> None:
    """Explore the store in a browser: imagery, cells, similar cells, heads from clicks, SQL."""
    import uvicorn

    from geolink_store.app.server import create_app

    app = create_app(db, model_id=model_id, epoch=epoch)
    reach = (
        "only this machine can reach it"
        if host in LOCAL_HOSTS
        else "ANY machine that can reach this address can read the store"
    )
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"explorer of {db} at http://{shown}:{port} (on {host}: {reach}); Ctrl-C stops", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
