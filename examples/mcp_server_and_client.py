"""wasmrun and MCP, both directions, offline: the sandbox as an MCP server, and MCP tools in code mode.

1. **Server.** The seed's sales tools (``query_database``, ``get_targets`` over a fresh SQLite
   database) are served by `wasmrun.integrations.mcp.SandboxServer`; the official SDK's
   ``mcp.Client`` lists the tools, calls ``get_targets`` directly, runs a Q3 summary with
   ``run_code`` (the program calls the same tools through ``import tools``), keeps state across
   two ``run_code_in_session`` calls and asks the
   mcp-run-python drop-in, ``run_python_code``, for a value. ``wasmrun mcp --tools MODULE:ATTR``
   serves the same thing over stdio, ``--http HOST:PORT`` over streamable HTTP.
2. **Client ("code mode").** A small MCP server written with the SDK's ``MCPServer`` (a currency
   converter: the stand-in for any remote server) is connected with
   `wasmrun.integrations.mcp.McpConnection`; its tools are registered in a `wasmrun.ToolRegistry`
   with their JSON schemas, and guest code calls them as ``tools.convert(...)``: validated,
   audited, with the connection kept on the host.

    python examples/mcp_server_and_client.py

Needs ``pip install 'wasmrun[mcp]'``; no network, no API key.
"""

from __future__ import annotations

import json

import anyio
import mcp
from mcp.server.mcpserver import MCPServer

import wasmrun
from wasmrun.agent.seed import sales_database, seed_registry
from wasmrun.integrations.mcp import McpConnection, SandboxServer

Q3_SUMMARY = """\
import tools
rows = tools.query_database("sales", "2024-Q3", ["month", "revenue"])
targets = {t["month"]: t["target"] for t in tools.get_targets("2024-Q3")}
by_month = {}
for row in rows:
    by_month[row["month"]] = by_month.get(row["month"], 0) + row["revenue"]
for month, revenue in by_month.items():
    flag = "  <- missed target" if revenue < targets[month] else ""
    print(f"{month}: {revenue:>12,.0f} (target {targets[month]:,.0f}){flag}")
sum(by_month.values())
"""


async def serve_the_sandbox(server: SandboxServer) -> None:
    async with mcp.Client(server.server) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        print("MCP tools:", ", ".join(names))

        targets = await client.call_tool("get_targets", {"quarter": "2024-Q3"})
        print("get_targets (direct):", targets.content[0].text[:80], "...")  # type: ignore[union-attr]

        summary = await client.call_tool("run_code", {"code": Q3_SUMMARY})
        reply = summary.structured_content or {}
        print("run_code stdout:\n" + reply["stdout"], end="")
        print("run_code value:", reply["value"], "| tool calls:", reply["tool_calls_total"])

        start = await client.call_tool("run_code_in_session", {"code": "import tools\nt = tools.get_targets('Q3')"})
        token = (start.structured_content or {})["session"]
        step = await client.call_tool("run_code_in_session", {"code": "len(t)", "session": token, "close": True})
        print("run_code_in_session, second call sees the first's `t`:", (step.structured_content or {})["value"])

        dropin = await client.call_tool("run_python_code", {"python_code": "sorted({3, 1, 2})"})
        print("run_python_code (mcp-run-python's reply):", dropin.content[0].text.replace("\n", " "))  # type: ignore[union-attr]

        hostile = await client.call_tool("run_code", {"code": "while True: pass", "limits": {"timeout_s": 1}})
        print("hostile run_code:", json.loads(hostile.content[0].text)["error"]["kind"])  # type: ignore[union-attr]


def currency_server() -> MCPServer:
    server = MCPServer("currency")
    rates = {"EUR": 1.0, "USD": 1.08, "NOK": 11.6}

    @server.tool()
    def convert(amount: float, to: str, source: str = "EUR") -> float:
        """Convert an amount between currencies (EUR, USD, NOK)."""
        return round(amount / rates[source] * rates[to], 2)

    return server


def code_mode() -> None:
    with McpConnection(currency_server()) as currency:
        registry = wasmrun.ToolRegistry(max_calls=20)
        print("registered from MCP:", currency.register(registry))
        code = "import tools\n[tools.convert(100, to) for to in ('USD', 'NOK')]"
        result = wasmrun.run(code, tools=registry)
        print("guest value:", result.value)
        refused = wasmrun.run("import tools\ntools.convert('lots', 'USD')", tools=registry)
        assert refused.error is not None
        print("bad arguments, refused before the server saw them:", refused.error.message)
        print("audit:", [(r.tool, r.outcome) for r in (*result.tool_calls, *refused.tool_calls)])


def main() -> None:
    with sales_database() as db:
        with SandboxServer(tools=seed_registry(db), prewarm=0) as server:
            anyio.run(serve_the_sandbox, server)
    code_mode()


if __name__ == "__main__":
    main()
