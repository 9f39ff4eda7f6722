"""A bounded write-behind: items handed to a consumer in order in one worker thread while the caller goes on.

The mirror of :mod:`~geolink_store.pipeline.prefetch`: where that produces the next items ahead of the caller,
this consumes the previous ones behind it. In an ingest the caller encodes batch n+1 while the worker shapes
batch n's rows and commits them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import Empty, Full, Queue
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()
_POLL_S = 0.1  # how often a blocked side checks whether the other one stopped


class WriteBehind(Generic[T]):
    """``consume(item)`` for each :meth:`put` item, in order, in one worker thread, up to ``depth`` waiting.

    Use as a context manager: leaving the block normally waits for every item to be consumed; leaving it by an
    exception drops the items still waiting (the one being consumed is finished). An error raised by
    ``consume`` is raised in the caller's thread, at the next :meth:`put` or at the end of the block; later
    items are dropped. ``depth`` 0 consumes each item in the caller's thread, at once.
    """

    def __init__(self, consume: Callable[[T], None], depth: int = 2) -> None:
        self.consume, self.depth = consume, depth
        self._queue: Queue[object] = Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="geolink-write-behind", daemon=True)

    def __enter__(self) -> WriteBehind[T]:
        if self.depth > 0:
            self._thread.start()
        return self

    def put(self, item: T) -> None:
        """Hand ``item`` over, waiting while ``depth`` items are already waiting."""
        if self.depth < 1:
            self.consume(item)
            return
        while True:
            self._raise()
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except Full:
                continue

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.depth < 1:
            return
        if kind is not None:
            self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.put(_END, timeout=_POLL_S)
                break
            except Full:
                continue
        self._thread.join()
        if kind is None:
            self._raise()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
            except Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _END or self._stop.is_set():
                return
            try:
                self.consume(item)  # type: ignore[arg-type]
            except BaseException as error:  # handed to the caller, raised there
                self._error = error
                self._stop.set()
                return

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
