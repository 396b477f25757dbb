"""What the MCP server adds to a run and to a tool call (in-process, the SDK's own client).

Group ``mcp-run-code``: ``sandbox.run("6 * 7")`` directly (the baseline) vs the same code as an
MCP ``run_code`` call through ``mcp.Client`` connected in-process (argument validation, limits,
reply building, JSON, the SDK's dispatch; no transport). Group ``mcp-tool``: ``registry.call`` vs
the same registry tool as a direct MCP tool call. Both sides use a server/sandbox without a
pre-warm pool, so the two sides of a group do the same guest work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("mcp")

import mcp
from anyio.from_thread import BlockingPortal, start_blocking_portal

import wasmrun
from wasmrun.integrations.mcp import SandboxServer

CODE = "6 * 7"


def _registry() -> wasmrun.ToolRegistry:
    registry = wasmrun.ToolRegistry()

    @registry.tool
    def add(a: int, b: int = 1) -> int:
        """Add two numbers."""
        return a + b

    return registry


@pytest.fixture(scope="module")
def connected() -> Iterator[tuple[SandboxServer, BlockingPortal, mcp.Client]]:
    with SandboxServer(tools=_registry(), prewarm=0) as server, start_blocking_portal() as portal:
        # entered and exited in one task on the portal's loop, as the SDK's cancel scopes need
        with portal.wrap_async_context_manager(mcp.Client(server.server)) as client:
            yield server, portal, client


@pytest.mark.benchmark(group="mcp-run-code")
def test_run_code_direct_sandbox(benchmark: Any, connected: Any) -> None:
    server = connected[0]
    result = benchmark(server.sandbox.run, CODE)
    assert result.value == "42"


@pytest.mark.benchmark(group="mcp-run-code")
def test_run_code_over_mcp_in_process(benchmark: Any, connected: Any) -> None:
    _, portal, client = connected
    result = benchmark(portal.call, client.call_tool, "run_code", {"code": CODE})
    assert result.structured_content["value"] == "42"


@pytest.mark.benchmark(group="mcp-tool")
def test_tool_registry_call(benchmark: Any, connected: Any) -> None:
    server = connected[0]
    record = benchmark(server.registry.call, "add", {"a": 1})
    assert record.result == 2


@pytest.mark.benchmark(group="mcp-tool")
def test_tool_over_mcp_in_process(benchmark: Any, connected: Any) -> None:
    _, portal, client = connected
    result = benchmark(portal.call, client.call_tool, "add", {"a": 1})
    assert result.structured_content == {"result": 2}
