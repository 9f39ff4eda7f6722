"""Ctrl-C that always stops a command within :data:`GRACE_S` seconds, with one line and exit code 130.

Python raises KeyboardInterrupt in the main thread only when it next runs Python code, which a long native
call (a DuckDB query, a Lance write, a torch kernel) may delay indefinitely. :class:`InterruptWatch` therefore
also has the signal written to a socket (``signal.set_wakeup_fd``, done by the C-level handler at once) and a
watcher thread reading it: if the command has not ended :data:`GRACE_S` seconds after Ctrl-C, the watcher
prints the line and ends the process. Every store write is one atomic Lance commit, so the store is left as
consistent as after a SIGKILL.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
from types import TracebackType

GRACE_S = 1.5
"""Seconds the command has to unwind by itself after Ctrl-C."""
EXIT_CODE = 130
"""128 + SIGINT, as shells report a process ended by Ctrl-C."""
MESSAGE = "error: interrupted"

_STOP = b"\0"


class InterruptWatch:
    """A context in which Ctrl-C ends the command within :data:`GRACE_S` seconds.

    Inactive (a plain context) outside the main thread, where signals cannot be watched.
    """

    def __init__(self) -> None:
        self.interrupted = threading.Event()
        self._done = threading.Event()
        self._reported = threading.Lock()
        self._active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> InterruptWatch:
        if not self._active:
            return self
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous_handler = signal.getsignal(signal.SIGINT)
        if self._previous_handler is not signal.SIG_IGN:  # nohup and background jobs keep ignoring it
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self._thread = threading.Thread(target=self._watch, name="geolink-interrupt", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if not self._active:
            return
        self._done.set()
        signal.signal(signal.SIGINT, self._previous_handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._writer.send(_STOP)
        self._thread.join(timeout=1.0)
        self._reader.close()
        self._writer.close()

    def report(self) -> None:
        """Print :data:`MESSAGE` on stderr, once however many threads ask."""
        if self._reported.acquire(blocking=False):
            sys.stderr.write(("\n" if sys.stderr.isatty() else "") + MESSAGE + "\n")
            sys.stderr.flush()

    def _watch(self) -> None:
        while True:
            select.select([self._reader], [], [])
            received = self._reader.recv(64)
            if not received or _STOP in received or self._done.is_set():
                return
            if signal.SIGINT in received:
                self.interrupted.set()
                if not self._done.wait(GRACE_S):
                    self.report()
                    os._exit(EXIT_CODE)
