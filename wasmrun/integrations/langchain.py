"""wasmrun for LangChain: a ``run_code`` `StructuredTool` that runs the model's code in a `wasmrun.Sandbox`.

>>> from wasmrun.integrations.langchain import run_code_tool
>>> with wasmrun.Sandbox(tools=registry) as sandbox:
...     tool = run_code_tool(sandbox)
...     model = ChatOpenAI(model="gpt-4.1").bind_tools([tool])   # or create_agent(model, tools=[tool])
...     message = tool.invoke(model.invoke(question).tool_calls[0])   # a ToolMessage for the model

The model's code runs in a fresh instance per call and reaches the sandbox's
`wasmrun.ToolRegistry` as ``import tools``. The tool's output is the
`wasmrun.agent.format_result` text: a failing program is a normal tool result
the model can read and fix, never a raised exception. ``ainvoke`` runs the code
on a worker thread (wasmtime releases the GIL).

Needs ``pip install 'wasmrun[langchain]'`` (``langchain-core`` only).
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
    from langchain_core.tools import StructuredTool
except ImportError as exc:  # the extra is not installed
    raise ImportError(missing_extra(__name__, "langchain", "langchain-core")) from exc

__all__ = ["registry_tools", "run_code_tool"]


def run_code_tool(
    sandbox: Sandbox | RunCode,
    **options: Unpack[CodeToolOptions],
) -> StructuredTool:
    """A LangChain tool running the model's Python in `sandbox` (its limits and tool registry).

    The options are `wasmrun.integrations.CodeToolOptions`.
    """
    return _structured_tool(code_tool(sandbox, **options))


def registry_tools(
    source: Sandbox | ToolRegistry, *, context: RunContext | None = None, max_result_chars: int = 20_000
) -> list[StructuredTool]:
    """The registry's tools (a sandbox's, or a registry) as LangChain tools the model calls directly.

    Each call goes through the registry's pipeline (validation, policy,
    approval, budgets, audit) with one shared `context` (its ``max_calls``
    budget spans all of them); a denied or failed call is answered as text
    (`wasmrun.agent.format_tool_call`), never raised.
    """
    return [_structured_tool(tool) for tool in direct_tools(source, context=context, max_result_chars=max_result_chars)]


def _structured_tool(tool: CodeTool | DirectTool) -> StructuredTool:
    def call(**arguments: Any) -> str:
        return tool.handle(arguments)

    async def acall(**arguments: Any) -> str:
        return await asyncio.to_thread(tool.handle, arguments)

    # A JSON-schema args_schema: LangChain passes the model's arguments through unvalidated, and the tool
    # (RunCode, or the registry's pipeline) answers a malformed call with text instead of LangChain raising.
    return StructuredTool(
        name=tool.name, description=tool.description, args_schema=tool.parameters, func=call, coroutine=acall
    )
