"""wasmrun over the Model Context Protocol (the official ``mcp`` SDK, 2.x): a server for MCP clients.

Server: `SandboxServer` / `serve` (the ``wasmrun mcp`` command)
exposes ``run_code``, mcp-run-python's ``run_python_code`` and, given a
`wasmrun.ToolRegistry`, the registry's tools, both as direct MCP tools and as
``import tools`` inside the code. See ``_server.py`` for the decisions.

Install with ``pip install 'wasmrun[mcp]'``.
"""

from ._arguments import LimitsRequest, RunCodeRequest, RunPythonCodeRequest, apply_limits
from ._server import RUN_CODE, RUN_PYTHON_CODE, RunCodeReply, SandboxServer, load_registry, serve

__all__ = [
    "RUN_CODE",
    "RUN_PYTHON_CODE",
    "LimitsRequest",
    "RunCodeReply",
    "RunCodeRequest",
    "RunPythonCodeRequest",
    "SandboxServer",
    "apply_limits",
    "load_registry",
    "serve",
]
