"""What the framework adapters share: ``run_code`` bound to the caller's sandbox, described and called.

Each adapter wraps one `CodeTool` in its framework's tool type, so the model
sees the same description (what the sandbox offers, its time limit, the
``tools`` module) and the same result text (`wasmrun.agent.format_result`)
whatever framework drives it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from typing_extensions import Unpack

from .._limits import Limits
from .._result import Result
from .._sandbox import Sandbox
from ..agent import DEFAULT_ENVIRONMENT, RUN_CODE, RunCode, format_tool_call
from ..tools import RunContext, Tool, ToolRegistry

SCIENTIFIC_ENVIRONMENT = (
    "Python 3.15 with numpy, pandas, scipy, matplotlib, scikit-learn and statsmodels installed "
    "(no other third-party packages)."
)
"""What the model is told about the scientific image's packages."""

CODE_PARAMETER = "The complete Python program to run."
"""The description of the ``code`` argument, as in `wasmrun.agent.run_code_definition`."""


def missing_extra(module: str, extra: str, package: str) -> str:
    """The message of the ImportError an adapter raises when its framework is not installed."""
    return f"{module} needs {package}, which is not installed: pip install 'wasmrun[{extra}]'"


def environment_of(sandbox: Sandbox) -> str:
    """What `sandbox`'s image offers, in the words the model reads."""
    return SCIENTIFIC_ENVIRONMENT if sandbox.image == "scientific" else DEFAULT_ENVIRONMENT


@dataclass(frozen=True)
class CodeTool:
    """A ``run_code`` tool as every framework sees it: a name, a description, and `run`.

    `run` never raises for the model's code: syntax errors, exceptions, limits
    and failed tool calls come back as the `wasmrun.agent.format_result` text.
    Host-side misuse (a closed sandbox, a re-entrant run) still raises.
    `on_result` sees every run's full `wasmrun.Result` (files, artifacts, tool
    calls), which the model's text only summarises.
    """

    run_code: RunCode
    name: str = RUN_CODE
    on_result: Callable[[Result], None] | None = None

    @property
    def description(self) -> str:
        """The description of `wasmrun.agent.run_code_definition` for this sandbox, its tools and files."""
        return str(self.run_code.definition()["function"]["description"])

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the tool's arguments: ``{"code": str}``."""
        return {
            "type": "object",
            "properties": {"code": {"type": "string", "description": CODE_PARAMETER}},
            "required": ["code"],
            "additionalProperties": False,
        }

    @property
    def strict(self) -> bool:
        """True: `parameters` is a valid OpenAI strict-mode schema (one required string, nothing else)."""
        return True

    def run(self, code: str) -> str:
        """Run `code` in a fresh instance; the model-facing result text."""
        return self.handle({"code": code})

    def handle(self, arguments: str | bytes | Mapping[str, Any]) -> str:
        """Run a model's call as it came (its JSON text or decoded arguments): bad arguments are answered too."""
        outcome = self.run_code.handle(arguments)
        if outcome.result is not None and self.on_result is not None:
            self.on_result(outcome.result)
        return outcome.content


class CodeToolOptions(TypedDict, total=False):
    """The keyword options of every adapter's ``run_code_tool`` (and of `code_tool`), all optional.

    * ``name`` (default ``"run_code"``): the tool's name, a Python identifier;
    * ``files``: input files every run sees read-only in its working directory;
    * ``limits``: `wasmrun.Limits` overriding the sandbox's for these runs;
    * ``environment``: what the model is told is installed (default: what the sandbox's image has);
    * ``max_output_chars`` (default 4000): how much of each output the model's text keeps;
    * ``on_result``: called with each run's full `wasmrun.Result` (to keep the files and charts
      the code made, or to log runs) before the model gets its text.

    ``files``, ``limits`` and ``environment`` need a `wasmrun.Sandbox`: a ready
    `wasmrun.agent.RunCode` carries its own.
    """

    name: str
    files: Mapping[str, bytes | str] | None
    limits: Limits | None
    environment: str | None
    max_output_chars: int
    on_result: Callable[[Result], None] | None


_OPTIONS = CodeToolOptions.__optional_keys__


def code_tool(sandbox: Sandbox | RunCode, **options: Unpack[CodeToolOptions]) -> CodeTool:
    """Bind ``run_code`` to `sandbox` (or take a ready `RunCode` as it is), with `CodeToolOptions`."""
    unknown = sorted(options.keys() - _OPTIONS)
    if unknown:
        raise TypeError(f"unexpected option(s) {', '.join(unknown)}; the options are {', '.join(sorted(_OPTIONS))}")
    name = options.get("name", RUN_CODE)
    on_result = options.get("on_result")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a Python identifier, got {name!r}")
    if isinstance(sandbox, RunCode):
        if {"files", "limits", "environment"} & {k for k, v in options.items() if v is not None}:
            raise TypeError("files, limits and environment are set on the RunCode itself; pass a Sandbox to set them")
        return CodeTool(sandbox, name, on_result)
    if not isinstance(sandbox, Sandbox):
        raise TypeError(f"sandbox must be a wasmrun.Sandbox or wasmrun.agent.RunCode, got {type(sandbox).__name__}")
    environment = options.get("environment")
    bound = RunCode(
        sandbox,
        files=options.get("files"),
        limits=options.get("limits"),
        environment=environment if environment is not None else environment_of(sandbox),
        max_output_chars=options.get("max_output_chars", 4_000),
    )
    return CodeTool(bound, name, on_result)


@dataclass(frozen=True)
class DirectTool:
    """One registry tool for the model to call directly, through the same pipeline as guest calls.

    Its schema is the tool's OpenAI definition (strict when it can be);
    `handle` runs ``registry.call`` with the shared `context` (so the
    registry's ``max_calls`` counts every call made through these tools) and
    never raises for a bad call: a denied, invalid or failed call is text.
    """

    tool: Tool
    registry: ToolRegistry
    context: RunContext
    max_result_chars: int = 20_000

    @property
    def name(self) -> str:
        """The tool's registered name."""
        return self.tool.name

    @property
    def description(self) -> str:
        """The tool's description (from its docstring)."""
        return self.tool.description

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the tool's arguments, in OpenAI's strict form where possible."""
        return dict(self.tool.openai_tool()["function"]["parameters"])

    @property
    def strict(self) -> bool:
        """Whether `parameters` is a valid OpenAI strict-mode schema."""
        return bool(self.tool.openai_tool()["function"]["strict"])

    def handle(self, arguments: str | bytes | Mapping[str, Any]) -> str:
        """Run the model's call (its JSON text or decoded arguments); the model-facing result text."""
        record = self.registry.call(self.tool.name, arguments, context=self.context)
        return format_tool_call(record, max_result_chars=self.max_result_chars)


def direct_tools(
    source: Sandbox | ToolRegistry,
    *,
    context: RunContext | None = None,
    max_result_chars: int = 20_000,
) -> list[DirectTool]:
    """Every tool of `source`'s registry (a sandbox's, or a registry itself) as a `DirectTool`.

    One `RunContext` (`context`, or a new one) is shared by all of them: pass
    a new one per conversation to give each conversation its own budgets.
    """
    registry = source.tools if isinstance(source, Sandbox) else source
    if not isinstance(registry, ToolRegistry):
        raise TypeError(
            "direct tools need a wasmrun.ToolRegistry, or a Sandbox that has one; "
            f"got {type(source).__name__}" + (" without a registry" if isinstance(source, Sandbox) else "")
        )
    if isinstance(max_result_chars, bool) or not isinstance(max_result_chars, int) or max_result_chars < 100:
        raise ValueError(f"max_result_chars must be an int >= 100, got {max_result_chars!r}")
    shared = context if context is not None else RunContext()
    return [DirectTool(tool, registry, shared, max_result_chars) for tool in registry.tools.values()]
