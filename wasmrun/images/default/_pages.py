"""Snapshot pages a fresh instance's run writes: the measurement behind issue 12's pages figure.

A default-image instance maps its memory image copy-on-write from the compiled
``.cwasm``; a page the guest writes becomes anonymous. So the ``Anonymous:``
total of the instance's memory mappings (``/proc/self/smaps``), read just
before the store is closed, counts the pages its run wrote: an exact count,
the same on every run of an image. Linux only. Used by
``tests/test_snapshot_pages.py`` (a bound) and
``benchmarks/test_bench_scaling.py`` (the figure); nothing in a run calls it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

_Maps = dict[tuple[int, int], list[str]]


def _maps() -> _Maps:
    with open("/proc/self/maps") as f:
        rows = [line.split() for line in f]
    return {(int(row[0].split("-")[0], 16), int(row[0].split("-")[1], 16)): row for row in rows}


def _anonymous_kb(lo: int, hi: int) -> int:
    """`Anonymous:` kB of the mappings inside [lo, hi): pages written there (file pages copied on write)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if not head.endswith(":"):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = lo <= start and end <= hi
            elif inside and head == "Anonymous:":
                total += int(line.split()[1])
    return total


def _linear_memory(new: _Maps) -> tuple[int, int]:
    """The instance's memory: its image mapped from the `.cwasm`, with the new writable mappings around it.

    ValueError when the new mappings hold no image, or more than one (another instance made meanwhile).
    """
    ((lo, hi),) = [k for k, row in new.items() if row[-1].endswith(".cwasm") and row[1].startswith("rw")]
    while below := next((k for k, row in new.items() if k[1] == lo and row[1].startswith("rw")), None):
        lo = below[0]
    while above := next((k for k, row in new.items() if k[0] == hi and row[1].startswith("rw")), None):
        hi = above[1]
    return lo, hi


@contextlib.contextmanager
def pages_written(backend: Any) -> Iterator[list[int]]:
    """While the block runs, the pages written by each instance this thread makes, appended as it is closed.

    Stands in for `backend`'s ``instantiate`` and ``close`` until the block ends. The backend is
    shared: other sandboxes' pool threads make and close their own instances through it meanwhile.
    Only this thread's instances are counted (one whose memory cannot be told apart from another's
    made at the same moment is skipped), and neither stand-in ever raises more than the real one.
    """
    here = threading.current_thread()
    instantiate, close = backend.instantiate, backend.close
    memory: dict[int, tuple[int, int]] = {}  # id of an instance made here -> its linear memory
    pages: list[int] = []

    def instantiate_and_find(memory_bytes: int) -> Any:
        if threading.current_thread() is not here:
            return instantiate(memory_bytes)
        before = _maps()
        instance = instantiate(memory_bytes)
        with contextlib.suppress(ValueError):
            memory[id(instance)] = _linear_memory({k: row for k, row in _maps().items() if k not in before})
        return instance

    def count_and_close(instance: Any) -> None:
        found = memory.pop(id(instance), None)
        if found is not None:
            pages.append(_anonymous_kb(*found) * 1024 // os.sysconf("SC_PAGE_SIZE"))
        close(instance)

    own = vars(backend)
    saved = {name: own[name] for name in ("instantiate", "close") if name in own}
    backend.instantiate, backend.close = instantiate_and_find, count_and_close
    try:
        yield pages
    finally:
        for name in ("instantiate", "close"):
            if name in saved:
                setattr(backend, name, saved[name])
            else:
                delattr(backend, name)
