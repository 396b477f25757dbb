"""wasmrun for smolagents: a `PythonExecutor` that runs a ``CodeAgent``'s code in a `wasmrun.Sandbox` session.

>>> from smolagents import CodeAgent
>>> from wasmrun.integrations.smolagents import WasmrunExecutor
>>> with wasmrun.Sandbox(tools=wasmrun.ToolRegistry(), limits=wasmrun.Limits(timeout_s=10)) as sandbox:
...     agent = CodeAgent(tools=[...], model=model, executor=WasmrunExecutor(sandbox))
...     agent.run("Chart Q3 revenue by region")

What the agent's code gets, as with smolagents' own local executor, but inside the sandbox:

* **State across steps**: every step runs in one `wasmrun.Session`, so variables, imports and
  files of earlier steps are still there. If the session dies (memory exhausted, its total fuel
  or lifetime used up), the executor starts a new one and the step fails with a message saying
  the earlier state is gone.
* **The agent's tools as plain functions**: smolagents' prompts make the model call tools as
  bare functions (``web_search(query=...)``, ``final_answer(x)``). Each of the agent's tools
  (and managed agents) is registered in the sandbox's `wasmrun.ToolRegistry` and bound in the
  guest under its own name; a call runs the tool on the host, through wasmrun's validation,
  policy, budgets and audit. The sandbox's own registry tools stay reachable as
  ``import tools``.
* **final_answer**: calls the agent's ``final_answer`` tool on the host and stops the program;
  the step then reports ``is_final_answer``. An answer that is not JSON data reaches the host as
  its ``repr``.
* **Errors**: a failing step raises, which is how a smolagents executor reports an error: the
  agent records it and shows the model the message, here the `wasmrun.agent.format_result` text
  (error kind, message, the offending line, a hint). What the step printed before failing is in
  ``executor.state["_print_outputs"]``, where the agent looks for it.
* **Variables** the agent sends (``agent.run(..., additional_args=...)``) must be JSON data.

The sandbox must have a registry (``Sandbox(tools=wasmrun.ToolRegistry())``): the agent's tools
are added to it. Give each executor its own sandbox and registry. Tool handlers run with the
registry's timeout (``default_timeout_s``, 30 s unless set): raise it for slow tools or managed
agents.

Needs ``pip install 'wasmrun[smolagents]'``.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from .._errors import SessionDeadError, WasmrunError
from .._limits import Limits
from .._result import Result
from .._sandbox import Sandbox
from .._session import Session
from ..agent import format_result
from ._code_tool import missing_extra

try:
    from smolagents.local_python_executor import CodeOutput, PythonExecutor
except ImportError as exc:  # the extra is not installed
    raise ImportError(missing_extra(__name__, "smolagents", "smolagents")) from exc

__all__ = ["WasmrunExecutionError", "WasmrunExecutor"]

#: smolagents input types -> the annotation wasmrun derives the tool's schema from.
_TYPES: dict[str, Any] = {
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": float,
    "array": list[Any],
    "object": dict[str, Any],
}

#: Stops the guest program after final_answer(); a BaseException, so `except Exception` in the
#: model's code does not swallow it.
_PRELUDE = """\
import json as _wasmrun_json
import tools as _wasmrun_tools

class _WasmrunFinalAnswer(BaseException):
    pass

def _wasmrun_final_answer(*args, **kwargs):
    try:
        _wasmrun_json.dumps([args, kwargs])
    except (TypeError, ValueError):
        args, kwargs = [repr(a) for a in args], {k: repr(v) for k, v in kwargs.items()}
    _wasmrun_tools.final_answer(*args, **kwargs)
    raise _WasmrunFinalAnswer("final_answer() was called")
"""

_NO_ANSWER = object()


class WasmrunExecutionError(WasmrunError, RuntimeError):
    """A step's code failed; the message is the model-facing text (`wasmrun.agent.format_result`)."""

    def __init__(self, message: str, result: Result | None = None) -> None:
        super().__init__(message)
        self.result = result


def _annotation(spec: Mapping[str, Any]) -> Any:
    kinds = spec.get("type", "any")
    kinds = list(kinds) if isinstance(kinds, (list, tuple)) else [kinds]
    nullable = bool(spec.get("nullable")) or "null" in kinds
    types = [_TYPES.get(kind, Any) for kind in kinds if kind != "null"]
    if not types or Any in types:
        return Any
    annotation = types[0]
    for other in types[1:]:
        annotation = annotation | other
    return annotation | None if nullable else annotation


class WasmrunExecutor(PythonExecutor):  # type: ignore[misc]  # smolagents is untyped
    """Runs a ``CodeAgent``'s steps in one session of `sandbox`; pass it as ``CodeAgent(executor=...)``.

    `limits` are each step's limits (default: the sandbox's); `total_fuel`,
    `lifetime_s` and `idle_timeout_s` bound the session (see `Sandbox.session`).
    `max_output_chars` caps each output in the error text the model reads;
    `on_result` receives each step's full `wasmrun.Result` (in a session,
    ``Result.files`` holds every file the steps wrote so far).
    """

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        limits: Limits | None = None,
        total_fuel: int | None = None,
        lifetime_s: float = 3600.0,
        idle_timeout_s: float = 600.0,
        max_output_chars: int = 4_000,
        on_result: Callable[[Result], None] | None = None,
    ) -> None:
        if not isinstance(sandbox, Sandbox):
            raise TypeError(f"sandbox must be a wasmrun.Sandbox, got {type(sandbox).__name__}")
        if sandbox.tools is None:
            raise ValueError(
                "the sandbox needs a ToolRegistry, to which the agent's tools are added: "
                "wasmrun.Sandbox(tools=wasmrun.ToolRegistry(), ...)"
            )
        self.sandbox = sandbox
        self.limits = limits or sandbox.limits
        self.max_output_chars = max_output_chars
        self.on_result = on_result
        self._session_options: dict[str, Any] = {
            "total_fuel": total_fuel,
            "lifetime_s": lifetime_s,
            "idle_timeout_s": idle_timeout_s,
        }
        #: What smolagents reads after a failed step: the output printed before the error.
        self.state: dict[str, Any] = {}
        self._agent_tools: dict[str, Any] = {}
        self._variables: dict[str, Any] = {}
        self._session: Session | None = None
        self._answer: Any = _NO_ANSWER
        self._lock = threading.Lock()

    # -- PythonExecutor ------------------------------------------------------------------
    def send_tools(self, tools: dict[str, Any]) -> None:
        """Register the agent's tools (and managed agents) as host tools and bind them in the guest by name."""
        registry = self.sandbox.tools
        assert registry is not None
        for name, tool in tools.items():
            if not name.isidentifier():
                raise ValueError(f"tool name {name!r} is not a Python identifier")
            if name not in self._agent_tools and name in registry.tools:
                raise ValueError(
                    f"the sandbox's registry already has a tool named {name!r}; give the executor a "
                    "sandbox whose registry does not use the agent's tool names"
                )
            if name not in self._agent_tools:
                registry.tool(name=name, description=str(getattr(tool, "description", "") or name))(
                    self._handler(name, tool)
                )
            self._agent_tools[name] = tool
        self._start(self._session)

    def send_variables(self, variables: dict[str, Any]) -> None:
        """Make `variables` globals of the guest (JSON data only: they cross into the sandbox as JSON)."""
        for name, value in variables.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"variable name {name!r} is not a Python identifier")
            try:
                msgspec.json.encode(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"variable {name!r} ({type(value).__name__}) cannot be sent into the sandbox: "
                    f"only JSON data can ({exc})"
                ) from exc
        self._variables.update(variables)
        if self._session is not None and variables:
            self._setup(self._session, variables)

    def __call__(self, code_action: str) -> CodeOutput:
        """Run one step's code in the session; the final answer, or the output of its last expression."""
        with self._lock:
            session = self._live_session()
            self._answer = _NO_ANSWER
            try:
                result = session.run(code_action, limits=self.limits)
            except SessionDeadError as exc:
                self._session = None
                raise self._ended(str(exc)) from exc
            answer, self._answer = self._answer, _NO_ANSWER
        if self.on_result is not None:
            self.on_result(result)
        logs = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr else "")
        self.state["_print_outputs"] = logs
        if answer is not _NO_ANSWER:
            return CodeOutput(output=answer, logs=logs, is_final_answer=True)
        if result.error is not None:
            content = format_result(result, limits=self.limits, max_output_chars=self.max_output_chars)
            raise WasmrunExecutionError(content, result)
        return CodeOutput(output=result.value, logs=logs, is_final_answer=False)

    def cleanup(self) -> None:
        """Close the session (smolagents calls this from ``agent.cleanup()``)."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    # -- internals -----------------------------------------------------------------------
    def _handler(self, name: str, tool: Any) -> Any:
        """A host function with the smolagents tool's parameters, calling the tool current under `name`."""
        inputs: Mapping[str, Mapping[str, Any]] = getattr(tool, "inputs", {}) or {}
        parameters, annotations, docs = [], {}, []
        for arg, spec in inputs.items():
            annotation = _annotation(spec)
            optional = bool(spec.get("nullable"))
            parameters.append(
                inspect.Parameter(
                    arg,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    annotation=annotation,
                    default=None if optional else inspect.Parameter.empty,
                )
            )
            annotations[arg] = annotation
            docs.append(f"    {arg}: {' '.join(str(spec.get('description', '')).split())}")
        # Required parameters first, as Python requires.
        parameters.sort(key=lambda p: p.default is not inspect.Parameter.empty)

        def handler(**arguments: Any) -> Any:
            value = self._agent_tools[name](**arguments)
            if name == "final_answer":
                self._answer = value
            return value

        handler.__signature__ = inspect.Signature(parameters, return_annotation=Any)  # type: ignore[attr-defined]
        handler.__annotations__ = {**annotations, "return": Any}
        handler.__name__ = name
        summary = " ".join(str(getattr(tool, "description", "") or name).split())
        handler.__doc__ = summary + ("\n\nArgs:\n" + "\n".join(docs) if docs else "")
        return handler

    def _bindings(self) -> str:
        lines = [_PRELUDE]
        for name in self._agent_tools:
            target = "_wasmrun_final_answer" if name == "final_answer" else f"_wasmrun_tools.{name}"
            lines.append(f"{name} = {target}")
        return "\n".join(lines)

    def _live_session(self) -> Session:
        """The session, or a new one; a session that died since the last step is reported instead."""
        if self._session is not None and not self._session.alive:
            reason = self._session.dead_reason or "it ended"
            self._session = None
            raise self._ended(reason)
        if self._session is None:
            self._start(None)
        assert self._session is not None
        return self._session

    @staticmethod
    def _ended(reason: str) -> WasmrunExecutionError:
        return WasmrunExecutionError(
            f"The sandbox session ended ({reason}); this code did not run. A new session starts with the next "
            "code: variables, imports and files of earlier steps are gone, so recompute what you need."
        )

    def _start(self, session: Session | None) -> None:
        """Bind the tools in `session`, or in a new session with the variables sent so far."""
        if session is None:
            session = self.sandbox.session(limits=self.limits, **self._session_options)
            self._session = session
            self._setup(session, self._variables)
        else:
            self._setup(session, {})

    def _setup(self, session: Session, variables: Mapping[str, Any]) -> None:
        code = self._bindings()
        if variables:
            payload = msgspec.json.encode(dict(variables)).decode()
            code += f"\nglobals().update(_wasmrun_json.loads({payload!r}))\n"
        result = session.run(code, limits=self.limits)
        if result.error is not None:
            raise WasmrunExecutionError(
                f"could not prepare the sandbox session: {result.error.type}: {result.error.message}", result
            )
