"""Issue 12's figures: pages dirtied per fresh run, runs on 2 caller threads, tool round trip, CPU loop.

Every figure has its baseline in the same run (ratios matter, not times; nothing is asserted about speed):

  faults        minor page faults per fresh `print(1)` (counted, not timed: immune to a busy machine)
                vs one `python -c "print(1)"` child process (its faults, from RUSAGE_CHILDREN); and the
                pages of the interpreter snapshot that run writes (copy-on-write), from /proc/self/smaps
  print1-2t     fresh `print(1)` from 2 caller threads on one Sandbox: executor "auto" (default,
                worker processes take the second thread's runs) and "inline" (both threads in this
                process) vs `python -c "print(1)"` subprocesses from 2 threads
  scale         short fresh runs (`sum(i*i for i in range(20000))`), 1 vs 2 caller threads, "auto" and
                "inline"; ratios in extra_info of the 2-thread rows
  prewarm       back-to-back fresh `print(1)`: default prewarm vs prewarm=0 (CPU per run in extra_info)
  tool-rt       guest loop of no-op tool calls (inline handler, and the default handler thread) minus
                the same loop calling a guest-local no-op function
  cpu-genexpr   `sum(i*i for i in range(10**6))` in a fresh run (fuel on) vs native `eval()`; the paired rows
                alternate the two in one loop, per image, and record the median ratio of wall and of thread
                CPU time (what to quote on a shared machine) and the fuel the run used (a count)
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import scientific_installed

import wasmrun
from wasmrun.images.default._pages import pages_written

PRINT1 = "print(1)"
SHORT = "sum(i*i for i in range(20000))"
SHORT_VALUE = str(sum(i * i for i in range(20000)))
GENEXPR = "sum(i*i for i in range(10**6))"
RUNS_PER_ROUND = 40
TOOL_CALLS = 2000


def _usage(who: int) -> tuple[float, int]:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime, r.ru_minflt


@pytest.fixture(scope="module")
def inline() -> Iterator[wasmrun.Sandbox]:
    with wasmrun.Sandbox(executor="inline", prewarm=0) as sb:
        for _ in range(5):
            sb.run(PRINT1)
        yield sb


@pytest.fixture(scope="module")
def auto() -> Iterator[wasmrun.Sandbox]:
    with wasmrun.Sandbox(prewarm=0) as sb:
        with ThreadPoolExecutor(2) as pool:  # start the worker processes outside any timing
            for _ in range(40):
                list(pool.map(sb.run, [PRINT1] * 4))
                time.sleep(0.05)
        yield sb


# ---------------------------------------------------------------------------------------------- faults


@pytest.mark.benchmark(group="faults")
def test_faults_wasmrun_fresh_print1(benchmark: Any, inline: wasmrun.Sandbox) -> None:
    """Minor page faults of this process per fresh `print(1)` (instantiate, run, close)."""
    rounds = 200
    _, f0 = _usage(resource.RUSAGE_SELF)
    result = benchmark.pedantic(inline.run, args=(PRINT1,), rounds=rounds, iterations=1, warmup_rounds=0)
    _, f1 = _usage(resource.RUSAGE_SELF)
    assert result.stdout == "1\n"
    benchmark.extra_info["minor_faults_per_run"] = round((f1 - f0) / rounds, 1)


@pytest.mark.benchmark(group="faults")
def test_faults_python_c_print1(benchmark: Any) -> None:
    """Baseline: minor page faults of one `python -c "print(1)"` process."""
    rounds = 20
    _, f0 = _usage(resource.RUSAGE_CHILDREN)
    out = benchmark.pedantic(
        subprocess.run,
        args=([sys.executable, "-c", PRINT1],),
        kwargs={"capture_output": True, "check": True},
        rounds=rounds,
        iterations=1,
    )
    _, f1 = _usage(resource.RUSAGE_CHILDREN)
    assert out.stdout == b"1\n"
    benchmark.extra_info["minor_faults_per_run"] = round((f1 - f0) / rounds, 1)


@pytest.mark.benchmark(group="faults")
@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc/self/smaps")
def test_pages_wasmrun_fresh_print1(benchmark: Any, inline: wasmrun.Sandbox) -> None:
    """Pages of the instance's linear memory one fresh `print(1)` writes, from instantiate to close.

    The memory image is mapped copy-on-write from the compiled `.cwasm`: a page the run writes becomes
    anonymous, so `Anonymous:` of the instance's memory just before `close` counts them. Exact, the same
    on every run of an image (faults also count first reads). tests/test_snapshot_pages.py bounds it.
    """
    # private on purpose: the figure is of the default image's instances
    with pages_written(inline._backend) as pages:
        result = benchmark.pedantic(inline.run, args=(PRINT1,), rounds=20, iterations=1, warmup_rounds=0)
    assert result.stdout == "1\n"
    benchmark.extra_info["pages_written_per_run"] = sorted(pages)[len(pages) // 2]
    benchmark.extra_info["pages_written_min_max"] = [min(pages), max(pages)]


# ---------------------------------------------------------------------------------------------- 2 threads


def _two_threads(benchmark: Any, call: Callable[[], Any], runs: int) -> None:
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: call(), range(4)))

        def batch() -> list[Any]:
            return list(pool.map(lambda _: call(), range(runs)))

        results = benchmark.pedantic(batch, rounds=7, warmup_rounds=1, iterations=1)
    assert len(results) == runs
    benchmark.extra_info["runs_per_round"] = runs
    benchmark.extra_info["runs_per_s"] = round(runs / benchmark.stats.stats.median, 1)


@pytest.mark.benchmark(group="print1-2t")
def test_print1_2threads_auto(benchmark: Any, auto: wasmrun.Sandbox) -> None:
    """Fresh `print(1)` from 2 caller threads, default executor ("auto")."""
    _two_threads(benchmark, lambda: auto.run(PRINT1), 100)


@pytest.mark.benchmark(group="print1-2t")
def test_print1_2threads_inline(benchmark: Any, inline: wasmrun.Sandbox) -> None:
    """Fresh `print(1)` from 2 caller threads, both in this process (executor="inline")."""
    _two_threads(benchmark, lambda: inline.run(PRINT1), 100)


@pytest.mark.benchmark(group="print1-2t")
def test_print1_2threads_python_c(benchmark: Any) -> None:
    """Baseline: `python -c "print(1)"` subprocesses from 2 threads."""
    _two_threads(benchmark, lambda: subprocess.run([sys.executable, "-c", PRINT1], capture_output=True), 20)


# ---------------------------------------------------------------------------------------------- scale


def _scale(benchmark: Any, sandbox: wasmrun.Sandbox, threads: int) -> None:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(sandbox.run, [SHORT] * (2 * threads)))

        def batch() -> list[wasmrun.Result]:
            return list(pool.map(sandbox.run, [SHORT] * RUNS_PER_ROUND))

        results = benchmark.pedantic(batch, rounds=7, warmup_rounds=1, iterations=1)
    assert all(r.value == SHORT_VALUE for r in results), [r.error for r in results if not r.ok][:3]
    benchmark.extra_info["threads"] = threads
    benchmark.extra_info["runs_per_s"] = round(RUNS_PER_ROUND / benchmark.stats.stats.median, 1)


@pytest.mark.benchmark(group="scale")
def test_scale_1thread_auto(benchmark: Any, auto: wasmrun.Sandbox) -> None:
    """Short fresh runs from 1 caller thread (default executor: they run in this process)."""
    _scale(benchmark, auto, 1)


@pytest.mark.benchmark(group="scale")
def test_scale_2threads_auto(benchmark: Any, auto: wasmrun.Sandbox) -> None:
    """The same runs from 2 caller threads (default executor: the second thread's runs go to a worker)."""
    _scale(benchmark, auto, 2)


@pytest.mark.benchmark(group="scale")
def test_scale_1thread_inline(benchmark: Any, inline: wasmrun.Sandbox) -> None:
    """Short fresh runs from 1 caller thread, executor="inline"."""
    _scale(benchmark, inline, 1)


@pytest.mark.benchmark(group="scale")
def test_scale_2threads_inline(benchmark: Any, inline: wasmrun.Sandbox) -> None:
    """The same runs from 2 caller threads, both in this process (executor="inline")."""
    _scale(benchmark, inline, 2)


# ---------------------------------------------------------------------------------------------- prewarm


def _back_to_back(benchmark: Any, sandbox: wasmrun.Sandbox) -> None:
    cpu0, _ = _usage(resource.RUSAGE_SELF)
    result = benchmark.pedantic(sandbox.run, args=(PRINT1,), rounds=300, iterations=1, warmup_rounds=20)
    cpu1, _ = _usage(resource.RUSAGE_SELF)
    assert result.stdout == "1\n"
    benchmark.extra_info["cpu_ms_per_run"] = round(1e3 * (cpu1 - cpu0) / 320, 3)


@pytest.mark.benchmark(group="prewarm")
def test_back_to_back_default_prewarm(benchmark: Any) -> None:
    """Back-to-back fresh `print(1)` with the default pre-warm pool (executor="inline")."""
    with wasmrun.Sandbox(executor="inline") as sb:
        _back_to_back(benchmark, sb)


@pytest.mark.benchmark(group="prewarm")
def test_back_to_back_prewarm_0(benchmark: Any) -> None:
    """The same with prewarm=0."""
    with wasmrun.Sandbox(executor="inline", prewarm=0) as sb:
        _back_to_back(benchmark, sb)


# ---------------------------------------------------------------------------------------------- tool round trip


def _tool_registry(inline_handler: bool) -> wasmrun.ToolRegistry:
    registry = wasmrun.ToolRegistry(max_calls=10 * TOOL_CALLS)

    @registry.tool(inline=inline_handler)
    def noop() -> None:
        """Does nothing."""

    return registry


def _loop(call: str) -> str:
    return f"import tools\ndef local():\n    return None\nfor _ in range({TOOL_CALLS}):\n    {call}\n"


def _pipeline_us(registry: wasmrun.ToolRegistry) -> float:
    """The host pipeline alone (decode, validate, budgets, handler, record), per call: no guest, no crossing."""
    from wasmrun._runstate import RunState
    from wasmrun.tools import RunContext

    best = float("inf")
    for _ in range(3):
        context, run = RunContext(), RunState(deadline_ns=time.monotonic_ns() + 10**12, max_output_bytes=1 << 20)
        started = time.perf_counter()
        for _ in range(TOOL_CALLS):
            registry.dispatch(context, run, "noop", "{}")
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / TOOL_CALLS


@pytest.mark.benchmark(group="tool-rt")
@pytest.mark.parametrize("handler", ["inline", "thread", "thread-unpinned"])
def test_tool_roundtrip_noop(benchmark: Any, handler: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """TOOL_CALLS guest calls of `tools.noop()`; extra_info: per-call round trip net of the local loop.

    Also per call: the guest's share (wasm instructions, a count) and the host pipeline alone (timed
    without a guest); the rest of `us_per_call` is the crossing (wasmtime + the ctypes callback).
    "thread-unpinned" is the default threaded handler with the hand-off's CPU affinity turned off
    (`wasmrun.tools._affinity`), the lever's baseline in the same run.
    """
    from wasmrun.tools import _affinity

    if handler == "thread-unpinned":
        monkeypatch.setattr(_affinity, "enabled", False)
    elif handler == "thread" and not _affinity.enabled:
        pytest.skip("no CPU affinity on this platform: 'thread' would repeat 'thread-unpinned'")
    registry = _tool_registry(handler == "inline")
    with wasmrun.Sandbox(executor="inline", prewarm=0, tools=registry) as sb:
        baseline = [sb.run(_loop("local()")) for _ in range(3)]
        local = min(r.stats.duration_s for r in baseline)
        result = benchmark.pedantic(sb.run, args=(_loop("tools.noop()"),), rounds=5, iterations=1, warmup_rounds=1)
    assert result.ok and len(result.tool_calls) == TOOL_CALLS, result.error
    benchmark.extra_info["us_per_call"] = round(1e6 * (benchmark.stats.stats.median - local) / TOOL_CALLS, 1)
    fuel = (result.stats.fuel_used - baseline[0].stats.fuel_used) / TOOL_CALLS
    benchmark.extra_info["guest_instructions_per_call"] = round(fuel)
    benchmark.extra_info["host_pipeline_us_per_call"] = round(_pipeline_us(registry), 1)
    if handler != "inline":
        benchmark.extra_info["bare_thread_handoff_us"] = round(_thread_handoff_us(), 1)


def _thread_handoff_us() -> float:
    """The floor of a handler thread: hand a job to a waiting thread and wait for it (no tool, no guest).

    On an idle VM core this is the hypervisor's wake-up latency, twice (~60 us on these machines when the
    other core is idle, ~6 us when it is busy), not Python's.
    """
    import queue
    import threading

    from wasmrun.tools._handlers import Done

    jobs: queue.SimpleQueue[Done | None] = queue.SimpleQueue()

    def worker() -> None:
        while (done := jobs.get()) is not None:
            done.set()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(TOOL_CALLS):
            done = Done()
            jobs.put(done)
            done.wait(10)
        best = min(best, time.perf_counter() - started)
    jobs.put(None)
    thread.join()
    return 1e6 * best / TOOL_CALLS


# ---------------------------------------------------------------------------------------------- CPU loop


@pytest.mark.benchmark(group="cpu-genexpr")
def test_cpu_genexpr_wasmrun(benchmark: Any, inline: wasmrun.Sandbox) -> None:
    """`sum(i*i for i in range(10**6))` in a fresh run, fuel metering on."""
    result = benchmark.pedantic(inline.run, args=(GENEXPR,), rounds=7, iterations=1, warmup_rounds=1)
    assert result.value == str(sum(i * i for i in range(10**6)))
    benchmark.extra_info["fuel"] = result.stats.fuel_used


@pytest.mark.benchmark(group="cpu-genexpr")
def test_cpu_genexpr_native(benchmark: Any) -> None:
    """Baseline: the same expression with `eval()` in this CPython."""
    code = compile(GENEXPR, "<genexpr>", "eval")
    value = benchmark.pedantic(eval, args=(code,), rounds=7, iterations=1, warmup_rounds=1)
    assert value == sum(i * i for i in range(10**6))


@pytest.mark.benchmark(group="cpu-genexpr-paired")
@pytest.mark.parametrize("image", ["default", "scientific"])
def test_cpu_genexpr_paired(benchmark: Any, image: str) -> None:
    """A fresh wasmrun run and a native `eval()` of the same expression, alternating: median per-pair ratios.

    Thread CPU time counts only this thread (the run executes on it, `executor="inline"`), so other processes'
    load inflates it far less than wall time; the fuel count does not depend on the machine at all.
    """
    if image == "scientific" and not scientific_installed():
        pytest.skip("needs the scientific image (wasmrun image install scientific)")
    code = compile(GENEXPR, "<genexpr>", "eval")
    expected = str(eval(code))
    pairs: list[tuple[float, float, float, float]] = []
    fuel: list[int] = []
    with wasmrun.Sandbox(image=image, executor="inline", prewarm=0, limits=wasmrun.Limits(timeout_s=60)) as sb:
        assert sb.run(GENEXPR).value == expected  # warm-up: image loaded, first-instance costs paid

        def pair() -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            result = sb.run(GENEXPR)
            wasm = (time.perf_counter() - wall, time.thread_time() - cpu)
            assert result.value == expected, result.error
            fuel.append(result.stats.fuel_used)
            wall, cpu = time.perf_counter(), time.thread_time()
            eval(code)
            pairs.append((*wasm, time.perf_counter() - wall, time.thread_time() - cpu))

        benchmark.pedantic(pair, rounds=7, iterations=1)
    wall_ratios = sorted(w / n for w, _, n, _ in pairs)
    cpu_ratios = sorted(c / m for _, c, _, m in pairs)
    benchmark.extra_info["wall_ratio_median"] = round(wall_ratios[len(pairs) // 2], 2)
    benchmark.extra_info["cpu_ratio_median"] = round(cpu_ratios[len(pairs) // 2], 2)
    benchmark.extra_info["wasm_cpu_ms_median"] = round(1e3 * sorted(c for _, c, _, _ in pairs)[len(pairs) // 2], 1)
    benchmark.extra_info["native_cpu_ms_median"] = round(1e3 * sorted(m for *_, m in pairs)[len(pairs) // 2], 1)
    benchmark.extra_info["fuel"] = fuel[-1]
