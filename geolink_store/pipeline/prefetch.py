"""A bounded read-ahead: the next items of an iterator produced in a worker thread while the caller works.

A thread, not a process: the CPU side of an ingest (GDAL reads, numpy resampling, shapely predicates, the tag
encoder) spends most of its time in native code that releases the GIL, and its products (chips, graphs) reach
the model without being pickled or copied; a process would pay both, and hold a second copy of the tag
encoder and its cache. The thread is a daemon that the caller never waits for: Ctrl-C stops an ingest at once,
not after the item in progress.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from queue import Full, Queue
from typing import TypeVar

T = TypeVar("T")
_END = object()
_POLL_S = 0.1  # how often a producer blocked on a full queue checks whether the caller left


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items`` in order, produced in one worker thread up to ``depth`` items ahead of the caller.

    An error raised while producing an item is raised here, at that item. Leaving the loop early stops the
    read-ahead (the item in progress is finished and dropped). ``depth`` 0 produces each item in the caller's
    thread when it is asked for.
    """
    if depth < 1:
        yield from items
        return
    queue: Queue[tuple[object, BaseException | None]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(queue, (item, None), stop):
                    return
            _put(queue, (_END, None), stop)
        except BaseException as error:  # handed to the caller, raised there
            _put(queue, (_END, error), stop)

    threading.Thread(target=produce, name="geolink-prefetch", daemon=True).start()
    try:
        while (entry := queue.get())[0] is not _END:
            yield entry[0]
        if entry[1] is not None:
            raise entry[1]
    finally:
        stop.set()


def _put(queue: Queue, entry: tuple[object, BaseException | None], stop: threading.Event) -> bool:
    """Put ``entry`` once there is room, unless the caller left first (then False)."""
    while not stop.is_set():
        try:
            queue.put(entry, timeout=_POLL_S)
            return True
        except Full:
            continue
    return False
