"""A bounded read-ahead: the next items of an iterator produced in a worker thread while the caller works.

A thread, not a process: the CPU side of an ingest (GDAL reads, numpy resampling, shapely predicates, the tag
encoder) spends most of its time in native code that releases the GIL, and its products (chips, graphs) reach
the model without being pickled or copied; a process would pay both, and hold a second copy of the tag
encoder and its cache.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_END = object()


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items`` in order, each produced in one worker thread up to ``depth`` items ahead of the caller.

    An error raised while producing an item is raised here, at that item. Leaving the loop early stops the
    read-ahead: items not started are dropped, the one in progress is finished and discarded. ``depth`` 0
    produces each item in the caller's thread when it is asked for (no read-ahead).
    """
    if depth < 1:
        yield from items
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geolink-prefetch")
    try:
        pending = deque(pool.submit(next, items, _END) for _ in range(depth))
        while (item := pending.popleft().result()) is not _END:
            pending.append(pool.submit(next, items, _END))
            yield item
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
