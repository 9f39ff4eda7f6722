"""The ``geolink`` command line."""

from geolink_store.cli.main import main

__all__ = ["main"]
