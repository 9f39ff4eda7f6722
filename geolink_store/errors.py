"""The one exception type users see: the CLI prints its message as a single line and exits non-zero."""


class GeolinkError(Exception):
    """A problem with the user's input or environment, described in one line (no traceback needed)."""
