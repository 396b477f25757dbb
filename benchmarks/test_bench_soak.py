"""Soak: many runs in one long-lived Sandbox per image, watching host memory and leaked resources.

    WASMRUN_SOAK_RUNS=100000 WASMRUN_SOAK_SCI_RUNS=5000 \\
        python -m pytest benchmarks/test_bench_soak.py --benchmark-only -s

(the defaults; set smaller counts for a quick check; ``WASMRUN_SOAK_PLOT=dir``
saves the RSS curve of each image as ``dir/soak-<image>.png``). Each image
runs `WARM_UP` runs first (the pool fills, the scientific image builds its warm
template, allocators reach their working size), then the soak proper.

RSS is read at *settled* points: the run loop pauses until the sandbox's pool
holds its full set of ready instances and no used one waits to be closed.
Read at an arbitrary moment, RSS says mostly how many guests happen to be
alive: a scientific instance holds 15-60 MiB, and between 1 and 7 of them may
be (one running, up to 4 used ones waiting for the pool thread, 2 ready), so a
single unsettled reading swings by ~150 MiB. The first settled reading after
warm-up is the baseline; the figure that matters is the growth from there to
the last settled reading, in percent (target < 5%, aim < 1%), and the slope of
a line fitted to the settled curve. Also reported: the highest (unsettled) RSS
seen, and live wasmtime stores, threads, open file descriptors and per-run host
directories at the end, before and after `close()`. Nothing is asserted except
that every run succeeded; the figures are printed and kept in the benchmark's
``extra_info``.
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
SAMPLES = 20  # settled RSS readings during the soak
SETTLE_TIMEOUT_S = 120.0  # the scientific template is built by the pool thread: 2-30 s, longer under load


def _status_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib() -> float:
    return _status_mib("VmRSS")


def _settle(sandbox: Sandbox) -> bool:
    """Wait until the pool is full of ready instances and has closed every used one; False on timeout."""
    pool: Any = sandbox._pool
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    steady = 0
    while time.monotonic() < deadline:
        full = pool is None or (not pool._used and not pool._cold and len(pool._ready) >= pool._size)
        steady = steady + 1 if full else 0
        if steady >= 3:  # three looks 20 ms apart: the pool thread is idle, not between two steps
            gc.collect()
            return True
        time.sleep(0.02)
    return False


def _settled_sample(sandbox: Sandbox, run: int) -> dict[str, Any]:
    settled = _settle(sandbox)
    return {
        "run": run,
        "settled": settled,
        "rss_mib": round(_rss_mib(), 1),
        "anon_mib": round(_status_mib("RssAnon"), 1),
        "file_mib": round(_status_mib("RssFile"), 1),
        "stores": _live_stores(),
    }


def _slope_mib_per_1000_runs(curve: list[dict[str, Any]]) -> float:
    xs = [p["run"] for p in curve]
    ys = [p["rss_mib"] for p in curve]
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return round(1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var, 3) if var else 0.0


def _plot(image: str, curve: list[dict[str, Any]], peaks: list[tuple[int, float]], directory: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([r for r, _ in peaks], [m for _, m in peaks], ".", color="0.7", label="RSS at any moment")
    ax.plot([p["run"] for p in curve], [p["rss_mib"] for p in curve], "o-", label="RSS, pool settled")
    ax.plot([p["run"] for p in curve], [p["anon_mib"] for p in curve], "s--", label="anonymous, pool settled")
    ax.set_xlabel("run")
    ax.set_ylabel("MiB")
    ax.set_title(f"soak, {image} image: one Sandbox, {curve[-1]['run']:,} runs")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    fig.tight_layout()
    os.makedirs(directory, exist_ok=True)
    fig.savefig(os.path.join(directory, f"soak-{image}.png"), dpi=100)
    plt.close(fig)


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
    curve = [_settled_sample(sandbox, warm)]
    start = _resources()
    peaks: list[tuple[int, float]] = []
    step = max(1, (runs - warm) // SAMPLES)
    busy = 0.0
    for i in range(warm, runs):
        began = time.perf_counter()
        one(i)
        busy += time.perf_counter() - began
        if (i + 1 - warm) % max(1, step // 10) == 0:
            peaks.append((i + 1, _rss_mib()))
        if (i + 1 - warm) % step == 0 or i + 1 == runs:
            curve.append(_settled_sample(sandbox, i + 1))
    end = _resources()
    sandbox.close()
    time.sleep(1.0)  # the pool thread disposes of its ready instances
    gc.collect()
    closed = _resources()
    if os.environ.get("WASMRUN_SOAK_PLOT"):
        _plot(image, curve, peaks, os.environ["WASMRUN_SOAK_PLOT"])
    base, last = curve[0]["rss_mib"], curve[-1]["rss_mib"]
    return {
        "image": image,
        "runs": runs,
        "warm_up_runs": warm,
        "runs_per_s": round((runs - warm) / busy, 1),
        "start": start,
        "end": end,
        "after_close": closed,
        "peak_rss_mib": round(max([m for _, m in peaks] + [base, last]), 1),
        "settled_rss_mib": [p["rss_mib"] for p in curve],
        "all_settled": all(p["settled"] for p in curve),
        "rss_growth_pct": round(100 * (last - base) / base, 2),
        "slope_mib_per_1000_runs": _slope_mib_per_1000_runs(curve[1:] if len(curve) > 2 else curve),
        "curve": curve,
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
    summary = {k: v for k, v in figures.items() if k != "curve"}
    print(f"\nsoak {image}: {summary}")
