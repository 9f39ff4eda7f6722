"""The ``lance`` module (pylance), for what LanceDB does not expose: fragments, versions, index segments."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from geolink_store._optional import import_optional

if TYPE_CHECKING:
    from lance import LanceDataset


def lance_module(purpose: str) -> ModuleType:
    """``lance``, or a MissingDependencyError naming ``purpose`` and the install line."""
    return import_optional("lance", purpose)


def dataset(uri: str, purpose: str, version: int | None = None) -> LanceDataset:
    """The Lance dataset at ``uri`` (at ``version``, else the latest)."""
    return lance_module(purpose).dataset(uri, version=version)
