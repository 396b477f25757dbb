"""`AsyncSandbox`: worker threads, concurrency, and cancellation that stops the guest, under asyncio and trio."""

from __future__ import annotations

import gc
import os
import threading
import time

import anyio
import pytest
import wasmtime
from conftest import IMAGES

import wasmrun
from wasmrun import AsyncSandbox, Limits

pytestmark = pytest.mark.anyio

SPIN = "while True: pass"


@pytest.fixture(params=["asyncio", "trio"], scope="module")
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)



def _open_stores() -> int:
    """wasmtime stores in this process that are not closed yet."""
    return sum(
        1 for obj in gc.get_objects() if isinstance(obj, wasmtime.Store) and getattr(obj, "_Managed__ptr", None)
    )


def _no_new_stores(before: int) -> bool:
    """No more open stores than `before` (other tests' sandboxes may hold some; ours must add none)."""
    for _ in range(100):
        if _open_stores() <= before:
            return True
        time.sleep(0.01)
    return False


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_run_returns_the_same_result_as_sandbox() -> None:
    async with AsyncSandbox(limits=Limits(timeout_s=10)) as sb:
        result = await sb.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\n6 * 7")
        files = await sb.run("open('a.txt').read() + '!'", files={"a.txt": "hi"})
        failed = await sb.run("1 / 0")
    assert (result.ok, result.stdout, result.stderr, result.value) == (True, "out\n", "err\n", "42")
    assert files.value == "'hi!'"
    assert failed.error is not None and failed.error.kind == "exception" and failed.error.type == "ZeroDivisionError"


async def test_fifty_concurrent_runs_give_their_own_results() -> None:
    results: dict[int, wasmrun.Result] = {}
    async with AsyncSandbox(limits=Limits(timeout_s=30)) as sb:

        async def one(i: int) -> None:
            results[i] = await sb.run(f"import random\nprint({i})\nsum(range({i} * 1000))")

        async with anyio.create_task_group() as group:
            for i in range(50):
                group.start_soon(one, i)
    assert sorted(results) == list(range(50))
    for i, result in results.items():
        assert result.ok, result.error
        assert (result.stdout, result.value) == (f"{i}\n", str(sum(range(i * 1000))))


async def test_runs_do_not_block_the_event_loop() -> None:
    ticks = 0
    async with AsyncSandbox(limits=Limits(timeout_s=30)) as sb:

        async def count() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.01)
                ticks += 1

        async with anyio.create_task_group() as group:
            group.start_soon(count)
            result = await sb.run("import time\ntime.sleep(0.5)\n'slept'")
            group.cancel_scope.cancel()
    assert result.value == "'slept'"
    # While the guest slept for 0.5 s on a worker thread, the loop kept running the counter.
    assert ticks >= 10


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("code", [SPIN, "import time\ntime.sleep(60)"])
async def test_cancelling_the_task_stops_the_guest_promptly(image: str, code: str) -> None:
    async with AsyncSandbox(image=image, limits=Limits(timeout_s=60), prewarm=0, executor="inline") as sb:
        before = _open_stores()
        started = time.monotonic()
        with anyio.move_on_after(0.3) as scope:
            await sb.run(code)
        stopped = time.monotonic() - started
        assert scope.cancelled_caught
        assert _no_new_stores(before)  # the run's store was closed before the cancellation propagated
        after = await sb.run("'still usable'")
    # The deadline was 60 s: the guest stopped at the cancellation (plus one epoch tick), not there.
    assert stopped < 10
    assert after.value == "'still usable'"


async def test_a_cancelled_run_does_not_disturb_concurrent_runs() -> None:
    async with AsyncSandbox(limits=Limits(timeout_s=30)) as sb:
        results: list[str | None] = []

        async def good(i: int) -> None:
            results.append((await sb.run(f"sum(range({i} * 10_000))")).value)

        async def doomed() -> None:
            with anyio.move_on_after(0.05):
                await sb.run(SPIN)

        async with anyio.create_task_group() as group:
            for i in range(10):
                group.start_soon(good, i)
                group.start_soon(doomed)
    assert sorted(results, key=int) == [str(sum(range(i * 10_000))) for i in range(10)]


@pytest.mark.slow
async def test_a_thousand_cancellations_leak_no_store_thread_or_memory(anyio_backend: str) -> None:
    if anyio_backend == "trio":
        pytest.skip("the leak check runs once (asyncio); trio shares the same worker-thread code")
    async with AsyncSandbox(limits=Limits(timeout_s=60), prewarm=0, executor="inline") as sb:
        await sb.run("1")

        async def cancel_many(n: int) -> None:
            for i in range(n):
                with anyio.move_on_after((0.0, 0.001, 0.005, 0.01)[i % 4]) as scope:
                    await sb.run(SPIN)
                assert scope.cancelled_caught

        await cancel_many(100)  # reach a steady state (allocator arenas, worker threads)
        gc.collect()
        rss, threads, stores = _rss_bytes(), threading.active_count(), _open_stores()
        await cancel_many(900)
        gc.collect()
        assert _no_new_stores(stores)
        assert threading.active_count() <= threads + 2
        # A leaked store holds ~15 MB: 900 leaks would be gigabytes; allow allocator noise.
        assert _rss_bytes() - rss < 64 * 2**20
        assert (await sb.run("'fine'")).value == "'fine'"


async def test_closed_sandbox_refuses_runs() -> None:
    sb = AsyncSandbox()
    await sb.aclose()
    with pytest.raises(wasmrun.SandboxClosedError):
        await sb.run("1")


async def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        AsyncSandbox(max_concurrency=0)
    # Sandbox's own checks, made in the constructor (the Sandbox itself is made on a worker thread later).
    with pytest.raises(ValueError, match="unknown image"):
        AsyncSandbox(image="nope")
    with pytest.raises(ValueError, match="prewarm must be an int between 0 and 64"):
        AsyncSandbox(prewarm=-1)
    with pytest.raises(TypeError, match=r"limits must be a wasmrun\.Limits"):
        AsyncSandbox(limits=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"unexpected argument.* limit; the arguments are limits, tools"):
        AsyncSandbox(limit=Limits())  # type: ignore[call-arg]
    async with AsyncSandbox() as sb:
        with pytest.raises(TypeError, match="code must be a str"):
            await sb.run(b"1")  # type: ignore[arg-type]


def test_sandbox_property_before_start() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = AsyncSandbox().sandbox


async def test_async_session_keeps_state_and_survives_a_cancelled_call() -> None:
    async with AsyncSandbox(limits=Limits(timeout_s=30)) as sb, sb.session() as s:
        await s.run("total = 40")
        with anyio.move_on_after(0.3) as scope:
            await s.run("total += 1000\n" + SPIN)
        assert scope.cancelled_caught
        # The cancelled call was rolled back, like a timeout: the session continues from the call before.
        result = await s.run("total + 2")
        assert result.value == "42"
        assert result.stats.session_call == 3
        fork = await s.fork()
        await fork.run("total = 0")
        assert (await s.run("total")).value == "40"
        assert (await fork.run("total")).value == "0"
        restored = sb.sandbox.restore(await s.snapshot())
        assert restored.run("total").value == "40"
        restored.close()
        await fork.aclose()


async def test_cancelling_during_a_slow_tool_call_stops_the_guest() -> None:
    registry = wasmrun.ToolRegistry()
    release = threading.Event()

    @registry.tool(timeout_s=60)
    def slow() -> str:
        """Wait until the test releases it (or 60 s)."""
        release.wait(60)
        return "done"

    try:
        async with AsyncSandbox(tools=registry, limits=Limits(timeout_s=60), prewarm=0, executor="inline") as sb:
            before = _open_stores()
            started = time.monotonic()
            with anyio.move_on_after(0.3) as scope:
                await sb.run("import tools\ntools.slow()")
            stopped = time.monotonic() - started
            assert scope.cancelled_caught
            assert _no_new_stores(before)
    finally:
        release.set()
    # The guest stopped at the cancellation although the handler was still running (its thread cannot be killed).
    assert stopped < 10


async def test_cancelling_a_run_in_a_worker_process_stops_it() -> None:
    async with AsyncSandbox(executor="processes", limits=Limits(timeout_s=60)) as sb:
        assert (await sb.run("6 * 7")).value == "42"  # a worker is up
        started = time.monotonic()
        with anyio.move_on_after(0.3) as scope:
            await sb.run(SPIN)
        stopped = time.monotonic() - started
        assert scope.cancelled_caught
        assert (await sb.run("'next'")).value == "'next'"  # a new worker took over
    assert stopped < 10
