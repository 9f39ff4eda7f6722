"""Faults of the machine rather than of the input: no permission, a full disk, an unreachable network.

Python raises them as :class:`OSError`; Lance and LanceDB as ``RuntimeError``/``ValueError``/``OSError`` whose
text carries the Rust ``(os error N)`` or ``Os { code: N }``, or a connection failure, and never the path.
:func:`environment_message` turns any of them into one line that names the file, or else the store the command
was given.
"""

from __future__ import annotations

import errno
import os
import re

ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ETIMEDOUT,
    }
)
"""The errors a user fixes on the machine (permissions, space, network), not in the command line."""

_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")
_NETWORK = re.compile(r"dns error|failed to lookup address|tcp connect error|error sending request", re.I)

_SPACE_HINT = "free some space and run the command again (the store keeps its last whole version)"
_PERMISSION_HINT = "check the permissions of the store and of the files given"
_HINTS = {
    errno.ENOSPC: _SPACE_HINT,
    errno.EDQUOT: _SPACE_HINT,
    errno.EFBIG: _SPACE_HINT,
    errno.EACCES: _PERMISSION_HINT,
    errno.EPERM: _PERMISSION_HINT,
    errno.EROFS: "the file system is mounted read-only",
}
_NETWORK_HINT = "check the address, the endpoint (e.g. AWS_ENDPOINT) and the network"


def environment_message(error: BaseException, store: str | None) -> str | None:
    """One line for a permission, disk-space or network fault, or None when ``error`` is not one.

    Args:
        error: what the command raised.
        store: the ``--db`` the command was given, named when the error itself carries no path.
    """
    where = f"store {store}" if store else "the store"
    if isinstance(error, OSError) and error.errno == errno.EPIPE:
        return None  # a closed pipe is no fault: the reader stopped listening
    if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS:
        filename = f"{error.filename}" if error.filename else where
        return _line(filename, os.strerror(error.errno), _HINTS.get(error.errno, _NETWORK_HINT))
    if isinstance(error, ConnectionError | TimeoutError):
        return _line(where, str(error) or type(error).__name__, _NETWORK_HINT)
    text = str(error)
    found = _RUST_OS_ERROR.search(text)
    code = int(found.group(1) or found.group(2)) if found else None
    if code in ENVIRONMENT_ERRNOS:
        return _line(where, os.strerror(code), _HINTS.get(code, _NETWORK_HINT))
    if _NETWORK.search(text):
        return _line(where, "cannot connect", _NETWORK_HINT)
    return None


def _line(where: str, reason: str, hint: str) -> str:
    return f"{where}: {reason}: {hint}"
