"""A small tool registry for the MCP server tests (loaded in-process and by ``--tools mcp_registry:registry``).

The audit log goes to the file named by ``WASMRUN_TEST_AUDIT`` when set, so a
test can read what a server in another process recorded.
"""

from __future__ import annotations

import os

from wasmrun import ToolRegistry

SALES = {"north": 120.5, "south": 98.25, "east": 143.0}


def make_registry(audit: str | None = None) -> ToolRegistry:
    registry = ToolRegistry(audit=audit)

    @registry.tool
    def revenue(region: str, quarter: int = 3) -> dict[str, float | str | int]:
        """Revenue of a region in a quarter.

        Args:
            region: north, south or east.
            quarter: 1 to 4.
        """
        if region not in SALES:
            raise ValueError(f"unknown region {region!r}")
        return {"region": region, "quarter": quarter, "revenue": SALES[region]}

    return registry


registry = make_registry(os.environ.get("WASMRUN_TEST_AUDIT"))
