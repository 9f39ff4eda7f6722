"""The root of the project's one error tree, in its lowest layer (``geolink_store.errors`` re-exports it).

Every error a user can cause derives from :class:`GeolinkError`: the command line prints its message as one
``error:`` line and exits 1. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations


class GeolinkError(Exception):
    """A problem with the user's input or environment, described in one line (no traceback needed)."""


class InputError(GeolinkError, ValueError):
    """An argument or input file that cannot be used as given."""


class CheckpointError(InputError):
    """A checkpoint that is missing, unreadable, or does not fit the model it is loaded into."""
