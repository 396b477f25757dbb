"""Fixtures shared by the framework-adapter tests: a sandbox whose registry the guest reaches as ``import tools``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import wasmrun

Ledger = list[tuple[str, dict[str, object]]]
"""The calls the host tools saw, in order: tests check the guest really reached them."""


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return []


@pytest.fixture(scope="session")
def registry(ledger: Ledger) -> wasmrun.ToolRegistry:
    """``add`` (records its arguments) and ``fail`` (always raises) as host tools."""
    registry = wasmrun.ToolRegistry()

    @registry.tool
    def add(a: int, b: int) -> int:
        """Add two integers on the host.

        Args:
            a: first addend.
            b: second addend.
        """
        ledger.append(("add", {"a": a, "b": b}))
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
def tool_sandbox(registry: wasmrun.ToolRegistry) -> Iterator[wasmrun.Sandbox]:
    """One default-image sandbox with the registry, for every adapter test."""
    with wasmrun.Sandbox(tools=registry, limits=wasmrun.Limits(timeout_s=5), prewarm=1) as sandbox:
        yield sandbox
