"""Optional extras, imported on demand with an error that gives the exact install line."""

from __future__ import annotations

import importlib
from types import ModuleType

from geolink_store.errors import MissingDependencyError

_EXTRAS = {
    "ray": ("ray", "ray"),
    "lance": ("pylance", "ray"),
    "transformers": ("transformers", "clip"),
}
"""Module name -> (PyPI distribution, geolink-store extra that installs it)."""


def import_optional(module: str, purpose: str) -> ModuleType:
    """Import an optional module, or raise an error naming the extra to install.

    Args:
        module: the importable name (``ray``, ``lance``, ``transformers``).
        purpose: what needs it, for the message (``"the Ray engine"``).

    Raises:
        MissingDependencyError: the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        distribution, extra = _EXTRAS[module]
        raise MissingDependencyError(
            f"{purpose} needs {distribution}, which is not installed: pip install 'geolink-store[{extra}]'"
        ) from None
