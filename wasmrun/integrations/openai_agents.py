"""wasmrun for the OpenAI Agents SDK: a ``run_code`` `FunctionTool` that runs the model's code in a `wasmrun.Sandbox`.

>>> from agents import Agent, Runner
>>> from wasmrun.integrations.openai_agents import run_code_tool
>>> with wasmrun.Sandbox(tools=registry) as sandbox:
...     agent = Agent(name="analyst", instructions="...", tools=[run_code_tool(sandbox)])
...     Runner.run_sync(agent, "Chart Q3 revenue by region").final_output

The model's code runs in a fresh instance per call and reaches the sandbox's
`wasmrun.ToolRegistry` as ``import tools``. The tool's output is the
`wasmrun.agent.format_result` text: a failing program (or a malformed call) is
a normal tool result the model can read and fix, never a raised exception. The
schema is strict (``additionalProperties: false``, ``code`` required), and the
run happens on a worker thread so the agent's event loop stays free.

Needs ``pip install 'wasmrun[openai-agents]'``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from typing_extensions import Unpack

from .._sandbox import Sandbox
from ..agent import RunCode
from ..tools import RunContext, ToolRegistry
from ._code_tool import CodeTool, CodeToolOptions, DirectTool, code_tool, direct_tools, missing_extra

try:
    from agents import FunctionTool, RunContextWrapper
except ImportError as exc:  # the extra is not installed
    raise ImportError(missing_extra(__name__, "openai-agents", "openai-agents")) from exc

__all__ = ["registry_tools", "run_code_tool"]


def run_code_tool(
    sandbox: Sandbox | RunCode,
    **options: Unpack[CodeToolOptions],
) -> FunctionTool:
    """An Agents SDK `FunctionTool` running the model's Python in `sandbox` (its limits and tool registry).

    The options are `wasmrun.integrations.CodeToolOptions`.
    """
    return _function_tool(code_tool(sandbox, **options))


def registry_tools(
    source: Sandbox | ToolRegistry, *, context: RunContext | None = None, max_result_chars: int = 20_000
) -> list[FunctionTool]:
    """The registry's tools (a sandbox's, or a registry) as `FunctionTool`s the model calls directly.

    Each call goes through the registry's pipeline (validation, policy,
    approval, budgets, audit) with one shared `context` (its ``max_calls``
    budget spans all of them); a denied or failed call is answered as text
    (`wasmrun.agent.format_tool_call`), never raised. Schemas are strict
    where the tool's parameters allow it.
    """
    return [_function_tool(tool) for tool in direct_tools(source, context=context, max_result_chars=max_result_chars)]


def _function_tool(tool: CodeTool | DirectTool) -> FunctionTool:
    # The SDK hands over the model's raw JSON; the tool validates it and answers a bad call with text.
    async def invoke(context: RunContextWrapper[Any], arguments: str) -> str:
        return await asyncio.to_thread(tool.handle, arguments)

    return FunctionTool(
        name=tool.name,
        description=tool.description,
        params_json_schema=tool.parameters,
        on_invoke_tool=invoke,
        strict_json_schema=tool.strict,
    )
