"""Soak: many runs in one long-lived Sandbox per image, watching host memory and leaked resources.

    WASMRUN_SOAK_RUNS=100000 WASMRUN_SOAK_SCI_RUNS=5000 \\
        python -m pytest benchmarks/test_bench_soak.py --benchmark-only -s

(the defaults; set smaller counts for a quick check). Each image runs
`WARM_UP` runs first (the pool fills, the scientific image builds its warm
template, allocators reach their working size), then the soak proper. The
baseline is the same process after warm-up: the figure that matters is RSS
growth from there to the end, in percent (target < 5%, aim < 1%). Also
reported: the highest RSS seen, and live wasmtime stores, threads, open file
descriptors and per-run host directories at the end, before and after
`close()`. Nothing is asserted except that every run succeeded; the figures
are printed and kept in the benchmark's ``extra_info``.
"""

from __future__ import annotations

import gc
import os
import tempfile
import threading
import time
from typing import Any

import pytest
import wasmtime
from conftest import scientific_installed

from wasmrun import Sandbox

RUNS = {
    "default": int(os.environ.get("WASMRUN_SOAK_RUNS", "100000")),
    "scientific": int(os.environ.get("WASMRUN_SOAK_SCI_RUNS", "5000")),
}
WARM_UP = {"default": 500, "scientific": 100}
SAMPLES = 20  # RSS readings during the soak


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _live_stores() -> int:
    return sum(
        1 for o in gc.get_objects() if isinstance(o, wasmtime.Store) and getattr(o, "_Managed__ptr", None) is not None
    )


def _resources() -> dict[str, float]:
    return {
        "rss_mib": round(_rss_mib(), 1),
        "stores": _live_stores(),
        "threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")),
        "run_dirs": sum(1 for n in os.listdir(tempfile.gettempdir()) if n.startswith("wasmrun-")),
    }


def soak(image: str, runs: int) -> dict[str, Any]:
    sandbox = Sandbox(image=image)

    def one(i: int) -> None:
        result = sandbox.run(f"print({i})\n[x * x for x in range({i % 100})]")
        assert result.ok and result.stdout == f"{i}\n", result.error

    warm = min(WARM_UP[image], max(1, runs // 10))
    for i in range(warm):
        one(i)
    start = _resources()
    began = time.perf_counter()
    peak = start["rss_mib"]
    step = max(1, (runs - warm) // SAMPLES)
    for i in range(warm, runs):
        one(i)
        if i % step == 0:
            peak = max(peak, _rss_mib())
    elapsed = time.perf_counter() - began
    end = _resources()
    sandbox.close()
    time.sleep(1.0)  # the pool thread disposes of its ready instances
    gc.collect()
    closed = _resources()
    return {
        "image": image,
        "runs": runs,
        "warm_up_runs": warm,
        "runs_per_s": round((runs - warm) / elapsed, 1),
        "start": start,
        "end": end,
        "after_close": closed,
        "peak_rss_mib": round(peak, 1),
        "rss_growth_pct": round(100 * (end["rss_mib"] - start["rss_mib"]) / start["rss_mib"], 2),
    }


@pytest.mark.parametrize("image", ["default", "scientific"])
@pytest.mark.benchmark(group="soak")
def test_soak(benchmark: Any, image: str) -> None:
    if image == "scientific" and not scientific_installed():
        pytest.skip("the scientific image is not installed")
    figures: dict[str, Any] = {}

    def go() -> None:
        figures.update(soak(image, RUNS[image]))

    benchmark.pedantic(go, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print(f"\nsoak {image}: {figures}")
