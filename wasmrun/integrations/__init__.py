"""wasmrun.integrations: wasmrun where agents already are.

* `wasmrun.integrations.mcp` (``pip install 'wasmrun[mcp]'``): an MCP server (``wasmrun mcp``)
  with ``run_code``, a drop-in for pydantic's mcp-run-python and a registry's tools.
"""
