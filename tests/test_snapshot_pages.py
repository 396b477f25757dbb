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

import pytest

import wasmrun
from wasmrun.images.default._pages import pages_written

# ~100 after the free blocks left by the build's own last steps were taken too (118 before). The
# margin is for layout: any change to the guest's sources moves objects and with them ~10 pages.
MAX_PAGES = 110


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc/self/smaps")
def test_fresh_print1_writes_few_snapshot_pages() -> None:
    with wasmrun.Sandbox(executor="inline", prewarm=0) as sb:
        # private on purpose: the count is of the default image's instances
        with pages_written(sb._backend) as pages:
            for _ in range(5):
                assert sb.run("print(1)").stdout == "1\n"
    assert pages and 0 < pages[-1] <= MAX_PAGES, pages
