"""A fresh run writes few pages of the interpreter snapshot (issue 12, item 1).

Every page of the snapshot a run writes is a copy-on-write fault of its fresh
instance: the costliest part of a short run. The default image's build takes
every free block of the guest's allocators (`python-wasm/guest/app.py`), so a
run's objects come from fresh memory instead of holes scattered over old pages.
The count is exact (the same on every run of an image), so it can be asserted;
`benchmarks/test_bench_scaling.py` reports it as `pages_written_per_run`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

import wasmrun

# ~100 after the free blocks left by the build's own last steps were taken too (118 before). The
# margin is for layout: any change to the guest's sources moves objects and with them ~10 pages.
MAX_PAGES = 110


def _maps() -> dict[tuple[int, int], list[str]]:
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


def _linear_memory(new: dict[tuple[int, int], list[str]]) -> tuple[int, int]:
    """The instance's memory: its image mapped from the `.cwasm`, with the new writable mappings around it."""
    ((lo, hi),) = [k for k, row in new.items() if row[-1].endswith(".cwasm") and row[1].startswith("rw")]
    while below := next((k for k, row in new.items() if k[1] == lo and row[1].startswith("rw")), None):
        lo = below[0]
    while above := next((k for k, row in new.items() if k[0] == hi and row[1].startswith("rw")), None):
        hi = above[1]
    return lo, hi


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc/self/smaps")
def test_fresh_print1_writes_few_snapshot_pages(monkeypatch: Any) -> None:
    with wasmrun.Sandbox(executor="inline", prewarm=0) as sb:
        backend = sb._backend  # private on purpose: the count is of the default image's instances
        instantiate, close = backend.instantiate, backend.close
        memory: dict[int, tuple[int, int]] = {}  # id of an instance made here -> its linear memory
        pages: list[int] = []

        here = threading.current_thread()

        # The backend is shared: other sandboxes' pool threads make and close their own instances through it
        # meanwhile. Only this thread's instances are measured (one whose memory cannot be told apart from
        # another's made at the same moment is skipped), and neither stand-in ever raises.
        def instantiate_and_find(memory_bytes: int) -> Any:
            if threading.current_thread() is not here:
                return instantiate(memory_bytes)
            before = _maps()
            instance = instantiate(memory_bytes)
            try:
                memory[id(instance)] = _linear_memory({k: row for k, row in _maps().items() if k not in before})
            except ValueError:
                pass
            return instance

        def count_and_close(instance: Any) -> None:
            found = memory.pop(id(instance), None)
            if found is not None:
                pages.append(_anonymous_kb(*found) * 1024 // os.sysconf("SC_PAGE_SIZE"))
            close(instance)

        monkeypatch.setattr(backend, "instantiate", instantiate_and_find)
        monkeypatch.setattr(backend, "close", count_and_close)
        for _ in range(5):
            assert sb.run("print(1)").stdout == "1\n"
    assert pages and 0 < pages[-1] <= MAX_PAGES, pages
