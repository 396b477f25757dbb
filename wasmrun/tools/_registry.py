"""The tool registry: the only side effects guest code can reach, behind one validation pipeline.

Every call, whether guest code did ``tools.query_database(...)`` or a model made
a structured tool call (``registry.call(name, arguments_json)``), goes through:

    decode (msgspec) -> validate arguments (pydantic) -> policy -> approval
    -> budgets and rate limit -> handler on a worker thread, with a timeout
    -> validate and cap the result -> audit record

Failures never cross the boundary as host exceptions: whatever a handler raises
(``KeyboardInterrupt`` and ``SystemExit`` included) becomes an error the caller
sees (``tools.ToolError`` in the guest) and an audit entry.
"""

from __future__ import annotations

import inspect
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import msgspec
import pydantic
import pydantic_core

from .._errors import WasmrunError
from .._runstate import RunState, Trap
from ._audit import AuditLog, Outcome, Source, ToolCallRecord
from ._handlers import Job, RateLimiter, Workers, run_inline, wait_for
from ._schema import ToolSignature, drop_default_nulls, openai_parameters
from ._schema_tool import InvalidArguments, SchemaSignature

F = TypeVar("F", bound=Callable[..., Any])

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_RAW_ARGUMENT_PREVIEW = 2_000
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|[\ud800-\udfff]")


class ToolError(WasmrunError):
    """Raise from a handler to fail the call with exactly this message (the guest sees ``tools.ToolError``).

    Any other exception a handler raises reaches the caller as
    ``"<tool>: <ExceptionType>: <message>"``.
    """


@dataclass(frozen=True)
class ToolCall:
    """What a policy or approver sees: the tool, its *validated* arguments, and where the call came from."""

    tool: str
    arguments: Mapping[str, Any]
    source: Source
    run_id: str
    code: str | None


Policy = Callable[[ToolCall], "bool | str | None"]
"""Return True/None to allow, False to deny, or a string: deny, with that reason."""

Approver = Callable[[ToolCall], bool]


@dataclass(frozen=True)
class Tool:
    """A registered tool. Plain value: pass it around, list it, export it."""

    name: str
    func: Callable[..., Any]
    signature: ToolSignature | SchemaSignature
    timeout_s: float
    requires_approval: bool
    max_calls: int | None
    inline: bool = False

    @property
    def description(self) -> str:
        return self.signature.description

    def openai_tool(self) -> dict[str, Any]:
        """This tool as an OpenAI function-tool definition: strict whenever its schema can be.

        Free-form mappings (``dict[str, X]``) and recursive models cannot be
        expressed in strict mode; such tools are exported with ``strict: false``
        and their full schema rather than a schema no model could satisfy.
        """
        parameters, strict = openai_parameters(self.signature.schema)
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": parameters,
                "strict": strict,
            },
        }

    def guest_spec(self) -> dict[str, Any]:
        doc = self.signature.docstring
        return {"name": self.name, "doc": doc, "params": self.signature.guest_params}


@dataclass
class RunContext:
    """Budgets and records of one run (or one agent conversation, for direct model calls)."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    code: str | None = None
    total_calls: int = 0
    calls_by_tool: dict[str, int] = field(default_factory=dict)
    records: list[ToolCallRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ToolRegistry:
    """Host functions that guest code (``import tools``) and models may call, through one pipeline.

    >>> registry = ToolRegistry()
    >>> @registry.tool
    ... def add(a: int, b: int = 1) -> int:
    ...     '''Add two numbers.'''
    ...     return a + b
    >>> wasmrun.run("import tools; tools.add(2, b=3)", tools=registry).value
    '5'

    * ``policy``: called with a `ToolCall` after validation; deny by returning False or a reason.
    * ``approver``: asked for tools registered with ``requires_approval=True``; without one they are denied.
    * ``max_calls``: budget of calls per run (or per `RunContext`); per-tool budgets on the decorator.
    * ``rate_limit``: ``(calls, per_seconds)`` across all runs.
    * ``audit``: a JSONL path or `AuditLog`; every call is appended with the code that made it.
    """

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        approver: Approver | None = None,
        max_calls: int = 1_000,
        rate_limit: tuple[int, float] | None = None,
        audit: AuditLog | str | Path | None = None,
        default_timeout_s: float = 30.0,
        max_argument_bytes: int = 1_000_000,
        max_result_bytes: int = 1_000_000,
        max_concurrent_handlers: int = 64,
        approval_timeout_s: float = 300.0,
    ) -> None:
        if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0:
            raise ValueError(f"max_calls must be an int >= 0, got {max_calls!r}")
        if rate_limit is not None:
            calls, per_s = rate_limit
            if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1 or not per_s > 0:
                raise ValueError(f"rate_limit must be (calls >= 1, per_seconds > 0), got {rate_limit!r}")
        _positive("default_timeout_s", default_timeout_s)
        _positive("approval_timeout_s", approval_timeout_s)
        self.approval_timeout_s = float(approval_timeout_s)
        self.policy = policy
        self.approver = approver
        self.max_calls = max_calls
        self.default_timeout_s = float(default_timeout_s)
        self.max_argument_bytes = max_argument_bytes
        self.max_result_bytes = max_result_bytes
        self.audit = AuditLog(audit) if isinstance(audit, (str, Path)) else audit
        self._rate = RateLimiter(*rate_limit) if rate_limit is not None else None
        self._tools: dict[str, Tool] = {}
        self._workers = Workers(max_concurrent_handlers)
        self._ids = itertools.count(1)
        self._decoder = msgspec.json.Decoder(dict[str, Any])

    # -- registration ------------------------------------------------------------
    @overload
    def tool(self, func: F, /) -> F: ...

    @overload
    def tool(
        self,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        requires_approval: bool = False,
        max_calls: int | None = None,
        inline: bool = False,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        requires_approval: bool = False,
        max_calls: int | None = None,
        inline: bool = False,
    ) -> F | Callable[[F], F]:
        """Register a typed function as a tool; usable bare (``@registry.tool``) or with options.

        ``inline=True`` runs a *synchronous* handler on the calling thread instead
        of a worker thread, saving the thread hand-off (~70 us of a ~130 us round
        trip). Use it only for handlers that cannot block (pure computation over
        host data): the tool's timeout and the run's deadline are checked only
        after an inline handler returns.
        """

        def register(fn: F) -> F:
            tool_name = name or fn.__name__
            if name is not None and not name:
                raise ValueError("tool name must not be empty")
            self._check_options(tool_name, timeout_s, max_calls)
            if inline and inspect.iscoroutinefunction(fn):
                raise ValueError(f"tool {tool_name!r}: inline=True needs a synchronous function")
            self._tools[tool_name] = Tool(
                name=tool_name,
                func=fn,
                signature=ToolSignature(fn, tool_name, description),
                timeout_s=float(timeout_s) if timeout_s is not None else self.default_timeout_s,
                requires_approval=requires_approval,
                max_calls=max_calls,
                inline=inline,
            )
            return fn

        return register(func) if func is not None else register

    def add_schema_tool(
        self,
        name: str,
        handler: Callable[..., Any],
        *,
        parameters: Mapping[str, Any],
        description: str | None = None,
        timeout_s: float | None = None,
        requires_approval: bool = False,
        max_calls: int | None = None,
    ) -> Tool:
        """Register a tool described by a JSON object schema, `parameters`, instead of a signature.

        For tools defined elsewhere, e.g. a remote MCP server's (`wasmrun.integrations.mcp.McpConnection`).
        Calls take the same pipeline as any tool; arguments are validated against `parameters` (``jsonschema``)
        and the handler gets them as keywords. See `wasmrun.tools._schema_tool`.
        """
        self._check_options(name, timeout_s, max_calls)
        signature = SchemaSignature(name, parameters, description)
        timeout = float(timeout_s) if timeout_s is not None else self.default_timeout_s
        tool = Tool(name, handler, signature, timeout, requires_approval=requires_approval, max_calls=max_calls)
        self._tools[name] = tool
        return tool

    def _check_options(self, name: str, timeout_s: float | None, max_calls: int | None) -> None:
        valid = isinstance(name, str) and bool(name) and set(name) <= _NAME_OK and not name[0].isdigit()
        if not valid or name == "ToolError":
            raise ValueError(f"tool name {name!r} must be a Python identifier (letters, digits, _)")
        if name in self._tools:
            raise ValueError(f"a tool named {name!r} is already registered")
        if timeout_s is not None:
            _positive("timeout_s", timeout_s)
        if max_calls is not None and (isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0):
            raise ValueError(f"max_calls must be an int >= 0, got {max_calls!r}")

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The registered tools by name (read-only view)."""
        return dict(self._tools)

    def openai_tools(self) -> list[dict[str, Any]]:
        """OpenAI strict function-tool definitions for every registered tool."""
        return [tool.openai_tool() for tool in self._tools.values()]

    def guest_specs(self) -> list[dict[str, Any]]:
        """What the guest needs to build ``import tools`` (names, signatures, docstrings)."""
        return [tool.guest_spec() for tool in self._tools.values()]

    # -- calls -------------------------------------------------------------------
    def call(
        self, name: str, arguments: str | bytes | Mapping[str, Any], *, context: RunContext | None = None
    ) -> ToolCallRecord:
        """Run a model's structured tool call through the same pipeline as guest calls.

        `arguments` is the JSON string from the model (or an already-decoded
        mapping). Never raises for a bad call: the returned record says what
        happened (``outcome``, ``result`` or ``error``). Pass one `RunContext`
        for a whole conversation so that its budgets apply across calls.
        """
        ctx = context or RunContext()
        if isinstance(arguments, bytes):
            arguments = arguments.decode("utf-8", "replace")
        elif not isinstance(arguments, str):
            try:
                arguments = msgspec.json.encode(dict(arguments)).decode()
            except (TypeError, ValueError, UnicodeError) as exc:
                return self._record(ctx, "model", name, next(self._ids), time.time(), time.perf_counter(),
                                    "invalid", "invalid", repr(arguments)[:_RAW_ARGUMENT_PREVIEW],
                                    error=f"{name}: arguments are not JSON-encodable: {_safe_str(exc)}")  # fmt: skip
        return self._pipeline(ctx, "model", name, arguments, None)[0]

    def dispatch(self, ctx: RunContext, run: RunState, name: str, args: str) -> tuple[bool, str]:
        """A guest call, from the host import: ``(True, result_json)`` or ``(False, error_message)``."""
        record, encoded = self._pipeline(ctx, "guest", name, args, run)
        if encoded is not None:
            return True, encoded.decode()
        return False, record.error or record.outcome

    def _record(
        self, ctx: RunContext, source: Source, name: str, call_id: int, started_at: float, started: float,
        decision: Any, outcome: Outcome, arguments: Any, *, reason: str | None = None,
        result: Any = None, error: str | None = None,
    ) -> ToolCallRecord:  # fmt: skip
        record = ToolCallRecord(
            id=call_id, tool=name, source=source, run_id=ctx.run_id, arguments=arguments,
            decision=decision, reason=reason, outcome=outcome, result=result, error=error,
            started_at=started_at, duration_s=time.perf_counter() - started,
        )  # fmt: skip
        with ctx.lock:
            ctx.records.append(record)
        if self.audit is not None:
            self.audit.write(record, ctx.code)
        return record

    def _pipeline(self, ctx: RunContext, source: Source, name: str, raw: str,
                  run: RunState | None) -> tuple[ToolCallRecord, bytes | None]:  # fmt: skip
        """Run one call through every stage: its record, and the result's JSON when the outcome is "ok".

        On every guest tool call's path: per-tool work is done once (`ToolSignature`), heavy objects only when needed.
        """
        started_at, started = time.time(), time.perf_counter()
        call_id = next(self._ids)

        def finish(decision: Any, outcome: Outcome, arguments: Any, **details: Any) -> tuple[ToolCallRecord, None]:
            return self._record(ctx, source, name, call_id, started_at, started, decision, outcome, arguments,
                                **details), None  # fmt: skip

        preview = raw[:_RAW_ARGUMENT_PREVIEW]
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return finish("invalid", "invalid", preview, error=f"no tool named {name!r} (available: {known})")

        # decode -> validate (a character is at most 4 bytes: short payloads need no counting)
        size = len(raw) if 4 * len(raw) <= self.max_argument_bytes else len(raw.encode("utf-8", "surrogatepass"))
        if size > self.max_argument_bytes:
            return finish("invalid", "invalid", preview,
                          error=f"{name}: arguments are {size:,} bytes; the limit is {self.max_argument_bytes:,}")
        try:
            decoded = self._decoder.decode(raw)
        except RecursionError:
            return finish("invalid", "invalid", preview, error=f"{name}: arguments are nested too deeply")
        except (msgspec.DecodeError, UnicodeError) as exc:
            if _SURROGATE.search(raw):
                why = "invalid arguments: strings contain unpaired surrogates (not valid Unicode)"
            else:
                why = f"arguments are not a JSON object: {exc}"
            return finish("invalid", "invalid", preview, error=f"{name}: {why}")
        try:
            cleaned = drop_default_nulls(decoded, tool.signature.schema) if decoded else decoded
            shown, positional, values = tool.signature.bind(cleaned)
        except pydantic.ValidationError as exc:
            return finish("invalid", "invalid", preview, error=f"{name}: invalid arguments: {_explain(exc)}")
        except InvalidArguments as exc:
            return finish("invalid", "invalid", preview, error=f"{name}: invalid arguments: {exc}")
        except (RecursionError, ValueError, pydantic_core.PydanticSerializationError):
            return finish("invalid", "invalid", preview, error=f"{name}: arguments are nested too deeply")

        def deadline_passed(what: str) -> tuple[ToolCallRecord, None]:
            assert run is not None
            if run.cancel.is_set():  # the caller cancelled the run (AsyncSandbox): stop the guest now
                finish("allowed", "error", shown, error=f"{name}: the run was cancelled")
                run.cancelled = True
                raise Trap("run cancelled")
            finish("allowed", "timeout", shown, error=f"{name}: {what} at the run's deadline")
            run.timed_out = True
            raise Trap(f"tool {name}: {what} at the run's deadline")

        # policy -> approval (bounded by the run's deadline: an approver may be a slow human)
        if self.policy is not None or tool.requires_approval:
            call = ToolCall(tool=name, arguments=shown, source=source, run_id=ctx.run_id, code=ctx.code)
            gate = Job(self._check_policy, (tool, call), {})
            if not self._workers.submit(gate):
                return finish("allowed", "error", shown, error=f"{name}: too many tool calls in progress")
            if not wait_for(gate, run, _remaining(run, self.approval_timeout_s)):
                if run is not None and (run.cancel.is_set() or time.monotonic_ns() >= run.deadline_ns):
                    return deadline_passed("waiting for policy or approval")
                return finish("denied", "denied", shown, reason="approval timed out",
                              error=f"{name}: denied: approval timed out")  # fmt: skip
            denial = gate.value if gate.error is None else f"policy failed: {type(gate.error).__name__}"
            if denial is not None:
                return finish("denied", "denied", shown, reason=denial, error=f"{name}: denied: {denial}")
        # budgets -> rate limit
        denial = self._take_budget(tool, ctx)
        if denial is not None:
            return finish("denied", "denied", shown, reason=denial, error=f"{name}: denied: {denial}")

        # handler, on a worker thread, bounded by the tool's timeout and the run's deadline
        if tool.inline:
            value, failure = run_inline(tool.func, positional, values)
            finished = time.perf_counter() - started <= _remaining(run, tool.timeout_s)
        else:
            job = Job(tool.func, tuple(positional), values)
            if not self._workers.submit(job):
                return finish("allowed", "error", shown, error=f"{name}: too many tool calls in progress")
            finished = wait_for(job, run, _remaining(run, tool.timeout_s))
            value, failure = job.value, job.error
        if not finished:
            if run is not None and (run.cancel.is_set() or time.monotonic_ns() >= run.deadline_ns):
                return deadline_passed("still running")
            return finish("allowed", "timeout", shown, error=f"{name}: timed out after {tool.timeout_s:g}s")
        if failure is not None:
            if isinstance(failure, ToolError):
                message = _safe_str(failure)  # exactly the handler's message
            else:
                message = f"{name}: {type(failure).__name__}: {_safe_str(failure)}"
            return finish("allowed", "error", shown, error=message)

        # validate and cap the result
        try:
            result = tool.signature.dump_result(value)
            encoded = msgspec.json.encode(result)
            size = len(encoded)
        except (pydantic.ValidationError, pydantic_core.PydanticSerializationError, TypeError, ValueError,
                RecursionError, UnicodeError) as exc:  # fmt: skip
            return finish(
                "allowed",
                "error",
                shown,
                error=f"{name}: returned a value that does not match its annotation: {_safe_str(exc)[:500]}",
            )
        if size > self.max_result_bytes:
            return finish("allowed", "error", shown,
                          error=f"{name}: result is {size:,} bytes; the limit is {self.max_result_bytes:,}")
        return finish("allowed", "ok", shown, result=result)[0], encoded

    def _check_policy(self, tool: Tool, call: ToolCall) -> str | None:
        """None to allow, else the reason for the denial. Runs on a worker thread."""
        if self.policy is not None:
            try:
                verdict = self.policy(call)
            except Exception as exc:  # noqa: BLE001 - a failing policy denies, it never allows
                return f"policy failed: {type(exc).__name__}: {_safe_str(exc)}"
            if verdict is False:
                return "denied by policy"
            if isinstance(verdict, str):
                return verdict
        if tool.requires_approval:
            if self.approver is None:
                return "requires approval, and no approver is configured"
            try:
                approved = self.approver(call)
            except Exception as exc:  # noqa: BLE001
                return f"approval failed: {type(exc).__name__}: {_safe_str(exc)}"
            if approved is not True:
                return "not approved"
        return None

    def _take_budget(self, tool: Tool, ctx: RunContext) -> str | None:
        with ctx.lock:
            if ctx.total_calls >= self.max_calls:
                return f"call budget exhausted ({self.max_calls} calls per run)"
            used = ctx.calls_by_tool.get(tool.name, 0)
            if tool.max_calls is not None and used >= tool.max_calls:
                return f"call budget for {tool.name} exhausted ({tool.max_calls} calls per run)"
            if self._rate is not None and not self._rate.try_acquire():
                return "rate limit exceeded; try again later"
            ctx.total_calls += 1
            ctx.calls_by_tool[tool.name] = used + 1
        return None


def _remaining(run: RunState | None, limit_s: float) -> float:
    if run is None:
        return limit_s
    return min(limit_s, max(0.0, (run.deadline_ns - time.monotonic_ns()) / 1e9))


def _explain(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        return "<unprintable>"


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86_400:
        raise ValueError(f"{name} must be a number of seconds in (0, 86400], got {value!r}")
