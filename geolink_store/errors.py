"""The project's one error tree, rooted in ``model.errors`` and extended by the store's own kinds.

Catch :class:`GeolinkError` for everything a user can cause; the subclasses also inherit the matching builtin
(``InputError`` is a ``ValueError``, ``MissingDependencyError`` an ``ImportError``) so generic handlers still
work.
"""

from __future__ import annotations

from model.errors import CheckpointError, GeolinkError, InputError

__all__ = [
    "CheckpointError",
    "EmptySourceError",
    "GeolinkError",
    "InputError",
    "MissingDependencyError",
    "StoreError",
]


class StoreError(GeolinkError):
    """A store that is missing, unreadable, or holds rows that do not fit what is asked."""


class MissingDependencyError(GeolinkError, ImportError):
    """An optional extra (Ray, pylance, transformers) is needed but not installed."""


class EmptySourceError(InputError):
    """A source (OSM) that holds no usable feature in the region asked for."""
