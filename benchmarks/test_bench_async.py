"""AsyncSandbox throughput: 200 concurrent `await sb.run("print(1)")` vs the same 200 runs on 2 threads.

Group ``async-200`` (issue 14's target: the async form is no slower than 2 threads). Both sides
run fresh instances of the default image with the default pool (``prewarm``), measured in the same
run; the report's ratio is threads-time / async-time (≥ 1 means async is no slower). The event
loop runs in one anyio blocking portal for the whole module, so a round measures the runs, not
starting a loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.from_thread
import pytest

import wasmrun

RUNS = 200
CODE = "print(1)"


@pytest.fixture(scope="module")
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal() as running:
        yield running


@pytest.fixture(scope="module", params=[None, 2], ids=["default-concurrency", "max-concurrency-2"])
def async_sandbox(request: pytest.FixtureRequest, portal: anyio.from_thread.BlockingPortal) -> Iterator[Any]:
    sb = wasmrun.AsyncSandbox(max_concurrency=request.param)
    portal.call(sb.__aenter__)
    portal.call(sb.run, CODE)
    yield sb
    portal.call(sb.aclose)


async def _concurrent(sb: wasmrun.AsyncSandbox) -> list[wasmrun.Result]:
    results: list[wasmrun.Result] = []

    async def one() -> None:
        results.append(await sb.run(CODE))

    async with anyio.create_task_group() as group:
        for _ in range(RUNS):
            group.start_soon(one)
    return results


@pytest.mark.benchmark(group="async-200")
def test_async_200_concurrent(benchmark: Any, portal: anyio.from_thread.BlockingPortal, async_sandbox: Any) -> None:
    results = benchmark.pedantic(lambda: portal.call(_concurrent, async_sandbox), rounds=5, warmup_rounds=1)
    assert len(results) == RUNS and all(r.ok and r.stdout == "1\n" for r in results)


@pytest.mark.benchmark(group="async-200")
def test_threads_2_same_200(benchmark: Any) -> None:
    """The baseline: the same 200 runs on one Sandbox from 2 threads."""
    with wasmrun.Sandbox() as sb, ThreadPoolExecutor(2) as pool:
        sb.run(CODE)
        results = benchmark.pedantic(lambda: list(pool.map(sb.run, [CODE] * RUNS)), rounds=5, warmup_rounds=1)
    assert len(results) == RUNS and all(r.ok and r.stdout == "1\n" for r in results)
