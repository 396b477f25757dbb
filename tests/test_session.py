"""Sessions: state across calls, per-call limits and totals, rollback, death, fork, snapshots, isolation.

Default-image tests use their own sandboxes (a session holds its instance, so
the shared `sandbox` fixture's pool is left alone); scientific-image tests
share one module sandbox.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import requires_scientific, scientific_installed

import wasmrun
from wasmrun import Limits, Sandbox, Session, SessionDeadError, SnapshotError, ToolRegistry

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(limits=Limits(timeout_s=10), prewarm=2) as sandbox:
        yield sandbox


@pytest.fixture
def session(sb: Sandbox) -> Iterator[Session]:
    with sb.session() as s:
        yield s


# -- state -------------------------------------------------------------------------------


def test_globals_imports_and_functions_persist(session: Session) -> None:
    first = session.run("import statistics\nrows = [3, 1, 2]\ndef total(xs):\n    return sum(xs)")
    assert first.ok, first.error
    second = session.run("rows.append(10)\n(statistics.median(rows), total(rows))")
    assert second.ok, second.error
    assert second.value == "(2.5, 16)"
    assert (first.stats.session_id, second.stats.session_id) == (session.id, session.id)
    assert (first.stats.session_call, second.stats.session_call) == (1, 2)
    assert session.calls == 2


def test_one_shot_results_have_no_session(sb: Sandbox) -> None:
    stats = sb.run("1").stats
    assert stats.session_id is None and stats.session_call is None


def test_state_never_crosses_sessions_or_reaches_one_shot_runs(sb: Sandbox) -> None:
    with sb.session() as a, sb.session() as b:
        assert a.run("secret = 'a'; import random; random.seed(5)").ok
        assert b.run("secret = 'b'").ok
        assert a.run("secret").value == "'a'"
        assert b.run("secret").value == "'b'"
        assert a.id != b.id
        for _ in range(3):  # pool instances too: none of them may have seen a session's globals
            leaked = sb.run("secret")
            assert leaked.error is not None and leaked.error.type == "NameError"
    with sb.session() as c:
        fresh = c.run("secret")
        assert fresh.error is not None and fresh.error.type == "NameError"


def test_exception_keeps_what_ran_before_it(session: Session) -> None:
    failed = session.run("before = 1\n1 / 0\nafter = 2")
    assert failed.error is not None and failed.error.type == "ZeroDivisionError"
    assert failed.error.lineno == 2
    assert session.run("before").value == "1"
    assert session.run("'after' in globals()").value == "False"


def test_traceback_shows_the_call_that_defined_a_function(session: Session) -> None:
    assert session.run("def f(x):\n    return 1 / x").ok
    result = session.run("f(0)")
    assert result.error is not None
    assert '"<call 1>", line 2, in f' in result.error.traceback
    assert '"<call 2>", line 1' in result.error.traceback


def test_random_continues_across_calls_and_is_seeded_per_sandbox() -> None:
    with Sandbox(seed=7, prewarm=0) as seeded:
        draws = []
        for _ in range(2):
            with seeded.session() as s:
                draws.append([s.run("import random; random.random()").value, s.run("random.random()").value])
    assert draws[0] == draws[1]  # same seed, same sequence
    assert draws[0][0] != draws[0][1]  # a later call continues the sequence instead of restarting it


def test_scratch_files_persist_and_later_calls_add_inputs(session: Session) -> None:
    wrote = session.run("open('notes.txt', 'w').write('one')")
    assert wrote.ok, wrote.error
    assert wrote.files == {"notes.txt": b"one"}
    more = session.run("open('notes.txt').read() + open('data.csv').read()", files={"data.csv": "a,b"})
    assert more.ok, more.error
    assert more.value == "'onea,b'"
    refused = session.run("open('data.csv', 'w').write('x')")
    assert refused.error is not None and refused.error.type == "PermissionError"
    assert session.run("open('data.csv').read()").value == "'a,b'"


# -- limits --------------------------------------------------------------------------------


def test_per_call_limits_override_the_session_defaults(sb: Sandbox) -> None:
    with sb.session(limits=Limits(timeout_s=5, max_output_bytes=100)) as s:
        loud = s.run("print('x' * 1000)")
        assert loud.error is not None and loud.error.kind == "output_limit"
        quiet = s.run("print('x' * 1000)", limits=Limits(max_output_bytes=10_000))
        assert quiet.ok, quiet.error
        assert len(quiet.stdout) == 1001


def test_timeout_rolls_back_the_call_and_the_session_goes_on(sb: Sandbox) -> None:
    with sb.session() as s:
        assert s.run("x = 1").ok
        stopped = s.run("x = 2\ny = 3\nwhile True:\n    pass", limits=Limits(timeout_s=0.3))
        assert stopped.error is not None and stopped.error.kind == "timeout"
        assert s.alive
        after = s.run("x, 'y' in globals()")
        assert after.ok, after.error
        assert after.value == "(1, False)"  # the stopped call left nothing behind
        assert after.stats.session_call == 3
        fuel = s.run("while True:\n    x += 1", limits=Limits(fuel=10_000_000))
        assert fuel.error is not None and fuel.error.kind == "fuel"
        assert s.run("x").value == "1"


def test_total_fuel_kills_the_session(sb: Sandbox) -> None:
    with sb.session(total_fuel=2_000_000_000) as s:
        assert s.run("n = 0").ok
        spent = s.run("while True:\n    n += 1")
        assert spent.error is not None and spent.error.kind == "fuel"
        assert not s.alive
        assert s.fuel_used <= 2_000_000_000
        with pytest.raises(SessionDeadError, match="total fuel"):
            s.run("n")


def test_idle_timeout_and_lifetime(sb: Sandbox) -> None:
    idle = sb.session(idle_timeout_s=0.2)
    assert idle.run("1").ok
    time.sleep(0.3)
    with pytest.raises(SessionDeadError, match="idle") as info:
        idle.run("1")
    assert "idle_timeout_s" in info.value.reason
    short = sb.session(lifetime_s=0.5)
    stopped = short.run("while True:\n    pass")
    assert stopped.error is not None and stopped.error.kind == "timeout"
    with pytest.raises(SessionDeadError, match="lifetime"):
        short.run("1")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"total_fuel": 0}, ValueError),
        ({"total_fuel": 1.5}, TypeError),
        ({"lifetime_s": -1}, ValueError),
        ({"idle_timeout_s": float("nan")}, ValueError),
        ({"limits": {"timeout_s": 1}}, TypeError),
    ],
)
def test_bad_session_options_are_refused(sb: Sandbox, kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        sb.session(**kwargs)  # type: ignore[arg-type]


def test_memory_exhaustion_kills_the_session_with_a_clear_error(sb: Sandbox) -> None:
    with sb.session(limits=Limits(memory_bytes=96 * MiB)) as s:
        assert s.run("kept = 1").ok
        hog = s.run("blocks = []\nwhile True:\n    blocks.append(bytearray(4 * 1024 * 1024))")
        assert hog.error is not None and hog.error.kind == "memory"
        assert not s.alive
        with pytest.raises(SessionDeadError, match="out of memory") as info:
            s.run("kept")
        assert isinstance(info.value, wasmrun.WasmrunError)
    assert sb.run("1 + 1").value == "2"  # the host and the sandbox are fine


def test_closed_session_and_closed_sandbox() -> None:
    sandbox = Sandbox(prewarm=0)
    s = sandbox.session()
    assert s.run("1").ok
    other = sandbox.session()
    s.close()
    with pytest.raises(SessionDeadError, match="closed"):
        s.run("1")
    sandbox.close()
    with pytest.raises(SessionDeadError, match="sandbox was closed"):
        other.run("1")
    with pytest.raises(wasmrun.SandboxClosedError):
        sandbox.session()


def test_an_unreachable_session_releases_its_store(sb: Sandbox) -> None:
    s = sb.session()
    assert s.run("x = 1").ok
    finalizer = s._finalizer
    assert finalizer.alive
    del s
    gc.collect()
    assert not finalizer.alive


# -- tools ---------------------------------------------------------------------------------


def _counting_registry() -> tuple[ToolRegistry, list[int]]:
    registry = ToolRegistry()
    made: list[int] = []

    @registry.tool
    def ticket(n: int) -> int:
        """A new ticket number (a side effect: never make it twice for one call)."""
        made.append(n)
        return 1000 + len(made)

    return registry, made


def test_rollback_and_fork_replay_tool_results_without_calling_tools_again() -> None:
    registry, made = _counting_registry()
    with Sandbox(tools=registry, prewarm=0) as sandbox, sandbox.session() as s:
        first = s.run("import tools\nt = tools.ticket(1)\nt")
        assert first.value == "1001"
        assert len(first.tool_calls) == 1
        assert s.run("while True:\n    pass", limits=Limits(timeout_s=0.3)).error is not None
        again = s.run("t, tools.ticket(2)")
        assert again.value == "(1001, 1002)"
        fork = s.fork()
        assert fork.run("t").value == "1001"
        assert made == [1, 2]  # re-executions answered from the record


# -- fork ----------------------------------------------------------------------------------


def test_fork_is_independent_both_ways(sb: Sandbox) -> None:
    with sb.session() as s:
        assert s.run("data = {'n': 1}\nimport random").ok
        with s.fork() as f:
            assert f.id != s.id
            assert f.run("data['n'] = 'fork'; data['f'] = 1").ok
            assert s.run("data['n'] = 'original'; data['o'] = 1").ok
            assert f.run("sorted(data.items())").value == "[('f', 1), ('n', 'fork')]"
            assert s.run("sorted(data.items())").value == "[('n', 'original'), ('o', 1)]"
            assert f.run("random.random()").value == s.run("random.random()").value  # same state, copied
            assert f.calls == s.calls


def test_fork_of_a_dead_session_is_refused(sb: Sandbox) -> None:
    s = sb.session()
    s.close()
    with pytest.raises(SessionDeadError):
        s.fork()


def test_a_history_that_does_not_replay_kills_the_session_rather_than_diverge(sb: Sandbox) -> None:
    with sb.session() as s:
        assert s.run("import time\nt0 = time.monotonic()").ok
        time.sleep(2.0)
        # Succeeds now; raises when re-executed right after the first call (well within 1.5 s, even on a busy machine).
        assert s.run("if time.monotonic() - t0 < 1.5:\n    raise ValueError('too soon')").ok
        stopped = s.run("while True:\n    pass", limits=Limits(timeout_s=0.2))
        assert stopped.error is not None and stopped.error.kind == "timeout"
        with pytest.raises(SessionDeadError, match="did not reproduce") as info:
            s.run("1")
        assert "success before, ValueError now" in info.value.reason


# -- snapshots -----------------------------------------------------------------------------


def test_snapshot_restore_round_trip(sb: Sandbox) -> None:
    with sb.session() as s:
        assert s.run("items = [1, 2]\nopen('f.txt', 'w').write('kept')").ok
        data = s.snapshot()
        assert s.run("items.append(3)").ok
    restored = sb.restore(data)
    with restored:
        result = restored.run("items, open('f.txt').read()")
        assert result.ok, result.error
        assert result.value == "([1, 2], 'kept')"
        assert result.stats.session_call == 2
        assert restored.id != s.id


def test_snapshot_from_another_version_or_damaged_is_refused(sb: Sandbox) -> None:
    with sb.session() as s:
        assert s.run("x = 1").ok
        data = s.snapshot()
    head, _, body = data.partition(b"\n")
    header, _, packed = body.partition(b"\n")
    other = json.loads(header)
    other["wasmrun"] = "0.0.1"
    with pytest.raises(SnapshotError, match="wasmrun version"):
        sb.restore(head + b"\n" + json.dumps(other).encode() + b"\n" + packed)
    other = json.loads(header)
    other["image_id"] = "default-0000"
    with pytest.raises(SnapshotError, match="image build"):
        sb.restore(head + b"\n" + json.dumps(other).encode() + b"\n" + packed)
    with pytest.raises(SnapshotError, match="damaged"):
        sb.restore(head + b"\n" + header + b"\n" + packed[: len(packed) // 2])
    with pytest.raises(SnapshotError, match="not a wasmrun session"):
        sb.restore(b"hello")
    with pytest.raises(TypeError):
        sb.restore("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ({"code": b"1"}, TypeError, "code must be a str, got bytes"),
        ({"code": "1", "limits": 5}, TypeError, "limits must be a wasmrun.Limits, got int"),
        ({"code": "1", "files": ["a"]}, TypeError, "files must be a mapping of name to bytes, got list"),
        ({"code": "1", "files": {"/a": "x"}}, ValueError, "file name '/a' must be a non-empty relative path"),
    ],
)
def test_a_session_call_refuses_what_a_run_refuses(
    sb: Sandbox, session: Session, args: dict[str, object], error: type[Exception], message: str
) -> None:
    """Same arguments, same error and message, and the refused call is not counted."""
    for runner in (sb, session):
        with pytest.raises(error) as raised:
            runner.run(**args)  # type: ignore[arg-type]
        assert str(raised.value) == message
    assert session.calls == 0


# -- scientific image ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sci() -> Iterator[Sandbox]:
    if not scientific_installed():
        pytest.skip("the scientific image is not installed; run `wasmrun image install scientific`")
    with Sandbox(image="scientific", limits=Limits(timeout_s=120, memory_bytes=1024 * MiB)) as sandbox:
        yield sandbox


_FRAME = "import pandas as pd, numpy as np\ndf = pd.DataFrame({'k': np.arange(1000) % 3, 'v': np.arange(1000.0)})"


@requires_scientific
def test_scientific_session_keeps_a_dataframe(sci: Sandbox) -> None:
    with sci.session() as s:
        assert s.run(_FRAME).ok
        grouped = s.run("df.groupby('k')['v'].sum().to_dict()")
        assert grouped.ok, grouped.error
        assert grouped.value == "{0: 166833.0, 1: 166167.0, 2: 166500.0}"
        chart = s.run("import matplotlib.pyplot as plt\nplt.plot(df['v'][:10])\nlen(df)")
        assert chart.ok, chart.error
        assert list(chart.artifacts) == ["figure-1.png"]
        again = s.run("plt.plot([1, 2]); df.shape")
        assert again.value == "(1000, 2)"
        assert list(again.artifacts) == ["figure-2.png"]  # figure numbers continue across calls


@requires_scientific
def test_scientific_fork_copies_memory_and_is_independent(sci: Sandbox) -> None:
    with sci.session() as s:
        assert s.run(_FRAME + "\nopen('out.txt', 'w').write('base')\nimport time\nt0 = time.monotonic()").ok
        time.sleep(1.0)
        # A chart opens font files (closed again at the end of the call); this call would fail if
        # re-executed right after the first one: the fork below must copy memory, not re-execute.
        charted = s.run("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nassert time.monotonic() - t0 > 0.8")
        assert charted.ok, charted.error
        assert charted.artifacts
        with s.fork() as f:
            assert f.run("df['v'] = 0.0\nopen('out.txt', 'w').write('fork')").ok
            assert s.run("df['v'].sum(), open('out.txt').read()").value == "(np.float64(499500.0), 'base')"
            assert f.run("df['v'].sum(), open('out.txt').read()").value == "(np.float64(0.0), 'fork')"


@requires_scientific
def test_scientific_timeout_rolls_back_and_snapshot_restores(sci: Sandbox) -> None:
    with sci.session() as s:
        assert s.run(_FRAME).ok
        stopped = s.run("df['v'] = -1.0\nwhile True:\n    pass", limits=Limits(timeout_s=1))
        assert stopped.error is not None and stopped.error.kind == "timeout"
        assert s.run("df['v'].max()").value == "np.float64(999.0)"
        data = s.snapshot()
    with sci.restore(data) as restored:
        assert restored.run("df['v'].max(), df.shape").value == "(np.float64(999.0), (1000, 2))"
    with pytest.raises(SnapshotError, match="image"):
        Sandbox(prewarm=0).restore(data)


def test_each_call_starts_in_work_even_after_chdir(session: Session) -> None:
    assert session.run("import os\nos.mkdir('sub')\nos.chdir('sub')\nos.getcwd()").value == "'/work/sub'"
    assert session.run("os.getcwd()").value == "'/work'"


def test_close_during_a_call_lets_it_finish_and_keeps_the_session_closed(sb: Sandbox) -> None:
    import threading

    s = sb.session()
    assert s.run("x = 1").ok
    results = []
    worker = threading.Thread(target=lambda: results.append(s.run("while True:\n    pass", limits=Limits(timeout_s=1))))
    worker.start()
    time.sleep(0.3)
    s.close()
    worker.join()
    assert results[0].error is not None and results[0].error.kind == "timeout"
    assert s.dead_reason == "it was closed"  # a rolled-back call does not bring a closed session back
    assert s._holder.instance is None  # its store is released
    with pytest.raises(SessionDeadError, match="closed"):
        s.run("x")


def test_snapshot_restores_in_another_process(sb: Sandbox, tmp_path: Path) -> None:
    import subprocess
    import sys

    with sb.session() as s:
        assert s.run("import collections\ncounts = collections.Counter('abracadabra')").ok
        (tmp_path / "s.bin").write_bytes(s.snapshot())
    child = (
        "import sys, wasmrun\n"
        "with wasmrun.Sandbox(prewarm=0) as sb, sb.restore(open(sys.argv[1], 'rb').read()) as s:\n"
        "    print(s.run('counts.most_common(1)').value)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path / "s.bin")], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[('a', 5)]\n"
