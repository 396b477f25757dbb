"""Runs in worker processes (``Sandbox(executor="processes"|"auto")``) behave exactly as in-process runs.

The guest runs in another process; tools, policy, budgets and audit stay in
this one. Every check compares a worker run with the same run in-process.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IMAGES

import wasmrun
from wasmrun import Limits, ReentrancyError, Sandbox, ToolError, ToolRegistry

HANDLER_PIDS: list[int] = []


def _registry(audit: Path | None = None) -> ToolRegistry:
    registry = ToolRegistry(audit=audit, max_calls=3)

    @registry.tool
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        HANDLER_PIDS.append(os.getpid())
        return a + b

    @registry.tool
    def secret() -> str:
        """Read a credential that only the caller's process has."""
        return os.environ.get("WASMRUN_TEST_SECRET", "missing")

    @registry.tool
    def fail() -> str:
        """Always refuses."""
        raise ToolError("no, never")

    return registry


@pytest.fixture(scope="module")
def workers() -> Iterator[Sandbox]:
    with Sandbox(executor="processes", limits=Limits(timeout_s=10), tools=_registry()) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def inline() -> Iterator[Sandbox]:
    with Sandbox(executor="inline", prewarm=0, limits=Limits(timeout_s=10), tools=_registry()) as sandbox:
        yield sandbox


CASES = [
    "print(6 * 7)\n[i * i for i in range(5)]",
    "import sys\nprint('err', file=sys.stderr)\nraise ValueError('bad')",
    "def f(:\n  pass",
    "import sys\nsys.exit(3)",
    "import tools\nprint(tools.add(2, b=3))\ntools.add(1)",
    "import tools\ntools.fail()",
    "import tools\n[tools.add(i) for i in range(5)]",  # the registry's budget is 3 calls per run
    "x = []\nwhile True:\n    x.append(bytearray(1 << 20))",
    "while True:\n    pass",
]


@pytest.mark.parametrize("code", CASES, ids=lambda c: c.splitlines()[0][:30])
def test_worker_runs_match_in_process_runs(workers: Sandbox, inline: Sandbox, code: str) -> None:
    limits = Limits(timeout_s=1, memory_bytes=96 * 2**20)
    there, here = workers.run(code, limits=limits), inline.run(code, limits=limits)
    assert (there.stdout, there.stderr, there.value, there.exit_code) == (
        here.stdout,
        here.stderr,
        here.value,
        here.exit_code,
    )
    assert (there.error is None) == (here.error is None)
    if here.error is not None:
        assert there.error is not None
        assert (there.error.kind, there.error.type, there.error.lineno) == (
            here.error.kind,
            here.error.type,
            here.error.lineno,
        )
    assert [(c.tool, c.outcome, c.arguments) for c in there.tool_calls] == [
        (c.tool, c.outcome, c.arguments) for c in here.tool_calls
    ]
    assert there.stats.tool_calls == here.stats.tool_calls


def test_tool_handlers_run_in_the_callers_process(workers: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMRUN_TEST_SECRET", "s3cret")  # set after the worker started: only this process has it
    HANDLER_PIDS.clear()
    result = workers.run("import tools, os\nprint(tools.secret(), tools.add(1), os.environ.get('WASMRUN_TEST_SECRET'))")
    assert result.ok, result.error
    assert result.stdout == "s3cret 2 None\n"
    assert HANDLER_PIDS == [os.getpid()]


def test_audit_records_are_written_by_the_caller(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    with Sandbox(executor="processes", tools=_registry(audit)) as sandbox:
        result = sandbox.run("import tools\ntools.add(40, 2)")
    assert result.value == "42"
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["tool"], r["outcome"], r["run_id"]) for r in records] == [("add", "ok", result.tool_calls[0].run_id)]


@pytest.mark.parametrize("image", IMAGES)
def test_files_and_limits_travel_to_the_worker(image: str) -> None:
    with Sandbox(executor="processes", image=image) as sandbox:
        result = sandbox.run(
            "print(open('in.txt').read())\nopen('out.txt', 'w').write('made')",
            files={"in.txt": "given"},
            limits=Limits(timeout_s=60, max_output_bytes=2048),
        )
        assert result.ok, result.error
        assert result.stdout == "given\n"
        assert result.files.get("out.txt") == b"made"
        capped = sandbox.run("print('x' * 5000)", limits=Limits(timeout_s=60, max_output_bytes=2048))
        assert capped.error is not None and capped.error.kind == "output_limit"


def test_a_tool_handler_cannot_start_a_run_on_the_same_sandbox() -> None:
    registry = ToolRegistry()
    holder: dict[str, Sandbox] = {}

    @registry.tool(inline=True)
    def again() -> str:
        """Tries to run code from inside a run."""
        try:
            holder["sandbox"].run("1")
        except ReentrancyError:
            return "refused"
        return "ran"

    with Sandbox(executor="processes", tools=registry) as sandbox:
        holder["sandbox"] = sandbox
        result = sandbox.run("import tools\ntools.again()")
    assert result.value == "'refused'"


def test_a_worker_that_dies_is_reported_and_replaced(workers: Sandbox) -> None:
    # A guest cannot kill its worker; a crash of the worker itself (here: killed from outside) must
    # become a clear internal error, and the next run must get a healthy worker.
    from wasmrun import _workers

    pool = _workers.shared_pool()
    worker = pool.take_waiting(60)
    assert worker is not None
    worker.proc.kill()
    worker.proc.wait()
    pool.give_back(worker)  # it looks idle; the next run finds out
    results = [workers.run("print(1)") for _ in range(pool.size + 1)]
    failures = [r for r in results if not r.ok]
    assert all(r.error is not None and r.error.type == "WorkerError" for r in failures)
    assert len(failures) <= 1
    assert results[-1].stdout == "1\n"


def test_auto_runs_concurrent_guests_in_workers_and_results_are_right() -> None:
    with Sandbox(tools=_registry(), prewarm=0) as sandbox:
        results: list[wasmrun.Result] = []
        lock = threading.Lock()

        def go(n: int) -> None:
            result = sandbox.run(f"import tools\ntools.add({n}, 1)")
            with lock:
                results.append(result)

        threads = [threading.Thread(target=go, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(int(r.value or "0") for r in results) == list(range(1, 9))
    assert all(len(r.tool_calls) == 1 and r.tool_calls[0].outcome == "ok" for r in results)


def test_bad_executor_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="executor must be one of"):
        Sandbox(executor="threads")


# ----------------------------------------------------------------------------- Ctrl-C

_CTRL_C = """
import os, signal, sys, threading, time
import wasmrun
from wasmrun import _workers

executor, target = sys.argv[1], sys.argv[2]
sandbox = wasmrun.Sandbox(executor=executor, prewarm=0, limits=wasmrun.Limits(timeout_s=30))
pool = _workers.shared_pool()
busy = threading.Thread(target=lambda: None)
busy.start()
if executor == "processes":  # start every worker of the pool, so that idle ones see a terminal's Ctrl-C too
    warm = [threading.Thread(target=sandbox.run, args=("import time; time.sleep(1)",)) for _ in range(pool.size)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
else:  # "auto": another thread keeps this process busy, so the main thread's run goes to a worker
    busy = threading.Thread(target=lambda: print("other thread:", sandbox.run("import time; time.sleep(4); 1").value))
    busy.start()
    deadline = time.monotonic() + 120
    while not pool._idle and time.monotonic() < deadline:
        pool.take()  # starts one in the background
        time.sleep(0.05)
seen = {w.proc.pid for w in pool._idle}
print("workers:", len(seen), flush=True)


def ctrl_c():
    time.sleep(0.5)
    if target == "group":  # what a terminal's Ctrl-C does: the whole foreground process group
        os.killpg(os.getpgid(0), signal.SIGINT)
    else:
        os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=ctrl_c).start()
started = time.monotonic()
try:
    result = sandbox.run("while True: pass")
    print("not interrupted:", result.error)
except KeyboardInterrupt:
    print("KeyboardInterrupt within 10s:", time.monotonic() - started < 10, flush=True)
busy.join()
nexts = [sandbox.run(f"{i} * 2") for i in range(pool.size + 1)]  # every worker of the pool gets one
print("next runs fine:", [r.value for r in nexts] == [str(i * 2) for i in range(pool.size + 1)])
for r in nexts:
    if not r.ok:
        print("failed:", r.error)
seen |= {w.proc.pid for w in pool._idle}
sandbox.close()
print("pids:", *sorted(seen))
"""


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")
@pytest.mark.parametrize("target", ["process", "group"])
@pytest.mark.parametrize("executor", ["processes", "auto"])
def test_ctrl_c_stops_a_run_in_a_worker_and_the_next_runs_work(executor: str, target: str) -> None:
    """Ctrl-C reaches the caller as KeyboardInterrupt; the busy worker is stopped, idle ones survive, none is orphaned.

    A terminal's Ctrl-C signals the whole process group, workers included: a
    worker must leave Ctrl-C to its caller, or an idle one dies and the next run
    fails. Runs in a child process (its own process group) so that the signal
    reaches nothing else.
    """
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C, executor, target],
        capture_output=True, text=True, env=env, timeout=300, check=False, start_new_session=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "KeyboardInterrupt within 10s: True" in lines, done.stdout + done.stderr[-3000:]
    assert int(next(line for line in lines if line.startswith("workers:")).split()[1]) >= 1
    assert "next runs fine: True" in lines, done.stdout + done.stderr[-3000:]
    if executor == "auto":
        assert "other thread: 1" in lines  # a run on another thread is not interrupted
    pids = [int(pid) for pid in next(line for line in lines if line.startswith("pids:")).split()[1:]]
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _exists(pid)]
        time.sleep(0.05)
    assert alive == [], f"worker processes outlived their caller: {alive}"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
