"""wasmrun for pydantic-ai: a ``run_code`` tool (and toolset) that runs the model's code in a `wasmrun.Sandbox`.

>>> from pydantic_ai import Agent
>>> from wasmrun.integrations.pydantic_ai import code_toolset
>>> with wasmrun.Sandbox(tools=registry, limits=wasmrun.Limits(timeout_s=10)) as sandbox:
...     agent = Agent("openai:gpt-4.1", toolsets=[code_toolset(sandbox)])
...     agent.run_sync("Chart Q3 revenue by region").output

The model's code runs in a fresh instance per call and reaches the sandbox's
`wasmrun.ToolRegistry` as ``import tools``; the tool returns the
`wasmrun.agent.format_result` text (stdout, value, files, or the error with a
hint), so a failing program is fed back to the model instead of raising.

Why a plain tool and not a code-mode runtime: pydantic-ai (checked up to 2.68)
has no pluggable code runtime; its code mode lives in ``pydantic-ai-harness``
and is bound to its own Monty interpreter. A ``run_code`` tool whose code calls
``tools.<name>(...)`` gives the same shape (tools called from code, through
wasmrun's validation, policy, budgets and audit) with any model.

Needs ``pip install 'wasmrun[pydantic-ai]'`` (``pydantic-ai-slim``).
"""

from __future__ import annotations

from typing import Any

from typing_extensions import Unpack

from .._sandbox import Sandbox
from ..agent import RunCode
from ..tools import RunContext, ToolRegistry
from ._code_tool import CodeTool, CodeToolOptions, DirectTool, code_tool, direct_tools, missing_extra

try:
    from pydantic_ai import Tool
    from pydantic_ai.toolsets import FunctionToolset
except ImportError as exc:  # the extra is not installed
    raise ImportError(missing_extra(__name__, "pydantic-ai", "pydantic-ai-slim")) from exc

__all__ = ["code_toolset", "registry_tools", "run_code_tool"]


def run_code_tool(
    sandbox: Sandbox | RunCode, *, max_retries: int | None = None, **options: Unpack[CodeToolOptions]
) -> Tool[Any]:
    """A pydantic-ai `Tool` running the model's Python in `sandbox` (its limits and tool registry).

    The options are `wasmrun.integrations.CodeToolOptions`. The tool is synchronous:
    pydantic-ai runs it on a worker thread, and wasmtime releases the GIL.
    """
    built = _pydantic_tool(code_tool(sandbox, **options))
    if max_retries is not None:
        built.max_retries = max_retries
    return built


def code_toolset(sandbox: Sandbox | RunCode, **options: Unpack[CodeToolOptions]) -> FunctionToolset[Any]:
    """A `FunctionToolset` holding `run_code_tool` (for ``Agent(toolsets=[...])``)."""
    return FunctionToolset([run_code_tool(sandbox, **options)])


def registry_tools(
    source: Sandbox | ToolRegistry, *, context: RunContext | None = None, max_result_chars: int = 20_000
) -> list[Tool[Any]]:
    """The registry's tools (a sandbox's, or a registry) as pydantic-ai tools the model calls directly.

    Each call goes through the registry's pipeline (validation, policy,
    approval, budgets, audit) with one shared `context` (its ``max_calls``
    budget spans all of them); a denied or failed call is answered as text
    (`wasmrun.agent.format_tool_call`), never raised. Give the agent these
    next to `run_code_tool`: the model fetches small things directly and
    processes large ones in code.
    """
    return [_pydantic_tool(tool) for tool in direct_tools(source, context=context, max_result_chars=max_result_chars)]


def _pydantic_tool(tool: CodeTool | DirectTool) -> Tool[Any]:
    def call(**arguments: Any) -> str:
        return tool.handle(arguments)

    # from_schema: the description and schema are the ones every wasmrun adapter shows, and the arguments
    # reach the tool unvalidated, so a malformed call gets its "invalid arguments" text back.
    return Tool[Any].from_schema(call, name=tool.name, description=tool.description, json_schema=tool.parameters)
