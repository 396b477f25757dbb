"""wasmrun over the Model Context Protocol (the official ``mcp`` SDK, 2.x): a server, and a client for code mode.

Server: `SandboxServer` / `serve` (the ``wasmrun mcp`` command)
exposes ``run_code``, mcp-run-python's ``run_python_code`` and, given a
`wasmrun.ToolRegistry`, the registry's tools, both as direct MCP tools and as
``import tools`` inside the code. See ``_server.py`` for the decisions.

Client ("code mode"): `McpConnection` connects to any MCP server and registers its
tools in a `wasmrun.ToolRegistry` with their JSON schemas, so guest code calls them
through the registry's validation, policy, budgets and audit (`registry_from_mcp`
makes a new registry). See ``_client.py``.

Install with ``pip install 'wasmrun[mcp]'``.
"""

from ._arguments import LimitsRequest, RunCodeRequest, RunPythonCodeRequest, apply_limits
from ._client import McpConnection, registry_from_mcp, reply_value
from ._serve import load_registry, serve
from ._server import RUN_CODE, RUN_CODE_IN_SESSION, RUN_PYTHON_CODE, RunCodeReply, SandboxServer

__all__ = [
    "RUN_CODE",
    "RUN_CODE_IN_SESSION",
    "RUN_PYTHON_CODE",
    "LimitsRequest",
    "McpConnection",
    "RunCodeReply",
    "RunCodeRequest",
    "RunPythonCodeRequest",
    "SandboxServer",
    "apply_limits",
    "load_registry",
    "registry_from_mcp",
    "reply_value",
    "serve",
]
