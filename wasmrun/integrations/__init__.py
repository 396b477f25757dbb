"""wasmrun.integrations: wasmrun where agents already are.

One module per integration, each behind its own optional extra, so that importing
``wasmrun`` never pulls a framework in:

* `wasmrun.integrations.mcp` (``pip install 'wasmrun[mcp]'``): an MCP server (``wasmrun mcp``)
  with ``run_code``, a drop-in for pydantic's mcp-run-python and a registry's tools.
* `wasmrun.integrations.pydantic_ai` (``pip install 'wasmrun[pydantic-ai]'``): a ``run_code``
  `pydantic_ai.Tool` and toolset;
* `wasmrun.integrations.openai_agents` (``[openai-agents]``): a ``run_code`` ``agents.FunctionTool``;
* `wasmrun.integrations.langchain` (``[langchain]``): a ``run_code`` LangChain ``StructuredTool``;
  these three also offer ``registry_tools()``: the registry's tools for the model to call directly;
* `wasmrun.integrations.smolagents` (``[smolagents]``): a ``PythonExecutor`` for ``CodeAgent``.

Every framework adapter runs the model's code in the `wasmrun.Sandbox` the caller
passes in (its `wasmrun.Limits` and `wasmrun.ToolRegistry`, reachable from the code
as ``import tools``), and answers with the same compact text as
`wasmrun.agent.RunCode`: a failing program comes back to the model as text
(error kind, message, the offending line, a hint), never as an exception.
Their ``run_code_tool`` options are the same everywhere: `CodeToolOptions`.
"""

from ._code_tool import CodeToolOptions

__all__ = ["CodeToolOptions"]
