"""Resources: CPU, memory, time, output and recursion are bounded, for compute and for blocking code.

Each case asserts the error kind a user sees and that the next run is fine.
The time figures (how far past its deadline a run returns) are measured in
``benchmarks/test_bench_deadlines.py``; the cases here only bound them loosely,
to catch a deadline that is not enforced at all or scales with machine load.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from wasmrun import Limits, Result, Sandbox, ToolRegistry

SHORT = Limits(timeout_s=1.0)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("while True: pass", id="loop"),
        pytest.param("x = 10**10**8", id="huge-int"),
        pytest.param("import re; re.match(r'(a+)+$', 'a' * 40 + 'b')", id="regex-backtracking"),
        pytest.param(
            "import sys\nsys.setrecursionlimit(10**6)\ndef f(n): return f(n + 1) + 1\nf(0)", id="deep-recursion"
        ),
        pytest.param("import time; time.sleep(60)", id="sleep"),
        pytest.param("import select; select.select([], [], [], 60)", id="select"),
        pytest.param("import importlib, time; importlib.reload(time).sleep(60)", id="reloaded-sleep"),
        pytest.param("import asyncio; asyncio.run(asyncio.sleep(60))", id="asyncio-sleep"),
    ],
)
def test_deadline_stops_the_guest(box: Sandbox, healthy: Callable[[], Result], code: str) -> None:
    started = time.perf_counter()
    result = box.run(code, limits=SHORT)
    elapsed = time.perf_counter() - started
    if result.error is not None and result.error.kind == "exception":
        # Deep recursion may overflow the native stack first; that is a clean stop too.
        assert result.error.type in ("RecursionError", "MemoryError"), result.error
    else:
        assert result.error is not None and result.error.kind == "timeout", result.error
        assert result.error.message == "the run exceeded its 1s deadline (Limits.timeout_s)"
    assert elapsed < 10, f"returned {elapsed:.1f}s after a 1s deadline"
    healthy()


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("import threading; threading.Event().wait()", id="event"),
        pytest.param("import threading; lock = threading.Lock(); lock.acquire(); lock.acquire()", id="lock"),
        pytest.param("import threading; c = threading.Condition(); c.acquire(); c.wait()", id="condition"),
        pytest.param("import threading; threading.Semaphore(0).acquire()", id="semaphore"),
        pytest.param("import queue; queue.Queue().get()", id="queue"),
        pytest.param("import queue; queue.SimpleQueue().get()", id="simple-queue"),
    ],
)
def test_a_wait_nothing_can_end_is_a_deadlock_error(box: Sandbox, healthy: Callable[[], Result], code: str) -> None:
    """Neither image has threads, so nothing could ever end the wait: a clear error, at once.

    (CPython-on-WASI itself aborts the interpreter there: a GuestCrash on both images.)
    """
    result = box.run(code, limits=SHORT)
    assert result.error is not None
    assert (result.error.kind, result.error.type) == ("exception", "RuntimeError"), result.error
    assert result.error.message.startswith("deadlock: waiting without a timeout"), result.error.message
    healthy()


def test_a_timed_wait_waits_its_timeout_and_fails(box: Sandbox, healthy: Callable[[], Result]) -> None:
    code = (
        "import queue, threading, time\n"
        "lock = threading.Lock()\n"
        "lock.acquire()\n"
        "started = time.monotonic()\n"
        "got = [lock.acquire(timeout=0.05), threading.Event().wait(0.05), lock.acquire(False)]\n"
        "try:\n"
        "    queue.Queue().get(timeout=0.05)\n"
        "except queue.Empty:\n"
        "    got.append('empty')\n"
        "print(got, time.monotonic() - started >= 0.15)\n"
        "with threading.RLock(), threading.RLock():\n"
        "    print(threading.Event().is_set())\n"
    )
    result = box.run(code, limits=SHORT)
    assert result.ok, result.error
    assert result.stdout == "[False, False, False, 'empty'] True\nFalse\n"
    healthy()


def test_a_long_timed_wait_ends_at_the_deadline(box: Sandbox, healthy: Callable[[], Result]) -> None:
    result = box.run("import threading; threading.Event().wait(60)", limits=SHORT)
    assert result.error is not None and result.error.kind == "timeout", result.error
    healthy()


def test_a_deadlock_on_the_raw_thread_lock_is_a_clean_crash(box: Sandbox, healthy: Callable[[], Result]) -> None:
    """`_thread`'s own lock is left as CPython-on-WASI has it (the import system uses it): it aborts the guest."""
    result = box.run("import _thread; lock = _thread.allocate_lock(); lock.acquire(); lock.acquire()", limits=SHORT)
    assert result.error is not None
    assert (result.error.kind, result.error.type) == ("internal", "GuestCrash"), result.error
    assert result.error.message == "the guest crashed (wasm trap: wasm `unreachable` instruction executed)"
    healthy()


def _hog_gil(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def test_deadline_holds_when_the_host_is_busy(box: Sandbox, healthy: Callable[[], Result]) -> None:
    """A busy host thread delays the epoch ticker; the deadline is wall-clock time all the same.

    With a 50 ms switch interval and a thread that never releases the GIL on its
    own, the ticker advances about once per 50 ms instead of every 5 ms: a deadline
    counted in ticks (wasmrun before 0.2) ended a 1 s run after ~10 s.
    """
    stop = threading.Event()
    hog = threading.Thread(target=_hog_gil, args=(stop,), daemon=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.05)
    hog.start()
    try:
        started = time.perf_counter()
        result = box.run("while True: pass", limits=SHORT)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        hog.join()
        sys.setswitchinterval(interval)
    assert result.error is not None and result.error.kind == "timeout"
    # Counted in ticks it would take ~10 s; the margin is for a loaded machine.
    assert elapsed < 6, f"a 1s deadline ended after {elapsed:.1f}s on a busy host"
    healthy()


@pytest.mark.parametrize(
    ("code", "kind", "type_"),
    [
        ("x = []\nwhile True: x.append(bytearray(10**7))", "memory", "MemoryError"),
        ("bytearray(2**30)", "memory", "MemoryError"),
        ("'x' * 2**30", "memory", "MemoryError"),
        ("while True: print('x' * 1000)", "output_limit", "OutputLimitExceeded"),
        ("import sys\nwhile True: sys.stderr.write('y' * 4096)", "output_limit", "OutputLimitExceeded"),
        ("str(10**100000)", "exception", "ValueError"),  # CPython's int-to-str limit is on in both images
        ("eval('(' * 10000 + ')' * 10000)", "memory", "MemoryError"),  # the parser's own stack guard
        ("import json; json.loads('[' * 100000 + ']' * 100000)", "exception", "RecursionError"),
    ],
)
def test_resource_exhaustion_is_a_clean_error(
    box: Sandbox, healthy: Callable[[], Result], code: str, kind: str, type_: str
) -> None:
    result = box.run(code)
    assert result.error is not None, result
    assert (result.error.kind, result.error.type) == (kind, type_), result.error
    if kind == "output_limit":
        assert len(result.stdout.encode()) <= box.limits.max_output_bytes
        assert len(result.stderr.encode()) <= box.limits.max_output_bytes
    healthy()


def test_fuel_bounds_cpu(box: Sandbox, healthy: Callable[[], Result]) -> None:
    result = box.run("while True: pass", limits=Limits(fuel=10**8))
    assert result.error is not None and result.error.kind == "fuel"
    assert result.stats.fuel_used == 10**8
    healthy()


# ----------------------------------------------------------------------------- Ctrl-C


@pytest.fixture
def sigint_soon() -> Iterator[Callable[[float], None]]:
    """`sigint_soon(delay)`: send this process SIGINT after `delay` seconds (from another thread)."""
    timers: list[threading.Timer] = []

    def arm(delay: float) -> None:
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
        timers.append(timer)
        timer.start()

    yield arm
    for timer in timers:
        timer.cancel()
        timer.join()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
@pytest.mark.parametrize("code", ["while True: pass", "import time; time.sleep(60)"])
def test_ctrl_c_stops_the_run_and_reaches_the_caller(
    box: Sandbox, healthy: Callable[[], Result], sigint_soon: Callable[[float], None], code: str
) -> None:
    sigint_soon(0.3)
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        box.run(code, limits=Limits(timeout_s=30))
    elapsed = time.perf_counter() - started
    assert elapsed < 15, f"Ctrl-C came back after {elapsed:.1f}s, as if it waited for the 30s deadline"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the caller's handler is back
    healthy()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_ctrl_c_during_a_tool_call(image: str, sigint_soon: Callable[[float], None]) -> None:
    registry = ToolRegistry()
    finished = threading.Event()

    @registry.tool(timeout_s=20)
    def slow() -> str:
        """Take a while."""
        time.sleep(1.0)
        finished.set()
        return "done"

    with Sandbox(image=image, tools=registry, prewarm=0) as sandbox:
        sigint_soon(0.3)
        started = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            sandbox.run("import tools\ntools.slow()\nwhile True: pass", limits=Limits(timeout_s=30))
        assert time.perf_counter() - started < 15
        result = sandbox.run("1 + 1")
        assert result.value == "2"


def test_asyncio_runs_without_sockets(box: Sandbox, healthy: Callable[[], Result]) -> None:
    """``asyncio.run`` needs no self-pipe in a guest (it used to fail making a socketpair)."""
    code = (
        "import asyncio\n"
        "async def square(i):\n"
        "    await asyncio.sleep(0.01 * i)\n"
        "    return i * i\n"
        "async def main():\n"
        "    queue = asyncio.Queue()\n"
        "    await queue.put(await asyncio.gather(*(square(i) for i in range(4))))\n"
        "    return await asyncio.wait_for(queue.get(), 1)\n"
        "asyncio.run(main())"
    )
    result = box.run(code)
    assert result.ok, result.error
    assert result.value == "[0, 1, 4, 9]"
    healthy()


# A Ctrl-C that Python delivers at the first line of the next host callback (Python runs signal handlers
# between bytecodes; while the main thread is inside wasm, the next ones are a callback's): the profile
# hook raises SIGINT there, before any `try` of the callback, exactly where a pending Ctrl-C is handled.
_CTRL_C_INSIDE_WASMTIME = r"""
import gc, signal, sys
from wasmrun import Sandbox, ToolRegistry

image, phase = sys.argv[1], sys.argv[2]
CALLBACKS = {"trampoline", "func_impl", "callback", "_on_epoch"}  # wasmtime-py's, wasmrun's fast ones, the epoch's
armed = False

# Phase `close`: Ctrl-C just after a store's memory was freed, before wasmtime-py forgets its pointer.
WHEN, WHERE = ("return", {"wasmtime_store_delete"}) if phase == "close" else ("call", CALLBACKS)

def profile(frame, event, arg):
    if armed and event == WHEN and frame.f_code.co_name in WHERE:
        sys.setprofile(None)
        signal.raise_signal(signal.SIGINT)

registry = ToolRegistry()

@registry.tool()
def ping(i: int) -> int:
    "Echo `i`; in phase `run` the third call arms the Ctrl-C (the guest is running the user's code then)."
    global armed
    armed = armed or (phase == "run" and i == 3)
    return i

def attempt(what, make):
    global armed
    armed = phase != "run"
    sys.setprofile(profile)
    try:
        made = make()
        print(what, "returned", getattr(made, "error", None), flush=True)
    except KeyboardInterrupt:
        print(what, "KeyboardInterrupt", flush=True)
    finally:
        sys.setprofile(None)
    print("handler restored:", signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)

options = dict(image=image, tools=registry, prewarm=0, executor="inline")
if phase == "load":
    attempt("load", lambda: Sandbox(**options))
code = "import tools\nfor i in range(10): tools.ping(i)\nwhile True: pass"
with Sandbox(**options) as sandbox:
    if phase == "close":
        session = sandbox.session()
        print("first call:", session.run("x = 1").ok, flush=True)
        attempt(phase, session.close)
        del session
        gc.collect()
        print("next run:", sandbox.run("1 + 1").value, flush=True)
    elif phase == "session":
        with sandbox.session() as session:
            print("first call:", session.run("x = 1").ok, flush=True)
            attempt(phase, lambda: session.run(code))  # in the call: rolled back
            attempt(phase, lambda: session.run("x + 1"))  # while the instance is rebuilt (re-executing `x = 1`)
            print("next run:", session.run("x + 1").value, flush=True)
    else:
        if phase != "load":
            attempt(phase, lambda: sandbox.run(code))
        print("next run:", sandbox.run("1 + 1").value, flush=True)
"""


@pytest.mark.parametrize("phase", ["load", "start", "run", "session", "close"])
def test_ctrl_c_inside_wasmtime_reaches_the_caller_after_the_wasm_call(image: str, phase: str) -> None:
    """Ctrl-C while the main thread is in wasm is raised only after it returned (see `wasmrun._sigint`).

    A `KeyboardInterrupt` raised at a callback's first line escapes wasmtime-py's
    ``try``: ctypes swallowed it ("Exception ignored on calling ctypes callback
    function") and returned garbage to wasmtime (a crash when it was not 0, a
    lost Ctrl-C otherwise). It happened when Ctrl-C came while the scientific image made an
    instance (``start``: loading its shim) or first loaded (``load``: compiling
    it), outside the run's own SIGINT handler; ``run`` is the run itself. In a
    ``session``, Ctrl-C while a rolled-back session re-executed its calls was lost
    or killed the session; now the call raises and the next one rebuilds it.
    ``close``: Ctrl-C as a store is freed left wasmtime-py's pointer set, and
    ``__del__`` freed it again (a segfault).
    """
    import subprocess
    from pathlib import Path

    if image == "default" and phase == "load":
        pytest.skip("the default image runs no guest code while it loads")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_INSIDE_WASMTIME, image, phase],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    report = done.stdout + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert "Exception ignored" not in done.stderr, report
    lines = done.stdout.splitlines()
    assert lines.count(f"{phase} KeyboardInterrupt") == (2 if phase == "session" else 1), report
    assert "handler restored: True" in lines, report
    assert "next run: 2" in lines, report
