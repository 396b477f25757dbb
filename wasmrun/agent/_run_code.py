"""The ``run_code`` tool: code execution as a tool call, with a compact, model-facing result.

`RunCode` binds the tool to a `wasmrun.Sandbox`: `RunCode.definition` is the
strict OpenAI function-tool definition (``code: str``, ``language: "python"``)
and `RunCode.handle` runs a model's call and returns what the model should see:
a JSON object with stdout/stderr (truncated with a clear marker), the value of
the last expression, the files the code wrote, and on failure the error kind,
exception type, message, the offending line of the model's own code and a short
traceback, plus a hint on how to recover.

Usable on its own in any tool-calling loop::

    run_code = RunCode(sandbox)
    tools = [run_code.definition(), *registry.openai_tools()]
    ...
    outcome = run_code.handle(tool_call.function.arguments)
    messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": outcome.content})
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import pydantic

from .._limits import Limits
from .._result import Result, RunError
from .._sandbox import Sandbox
from .._session import Session
from ..tools import RunContext, ToolCallRecord
from ._jsonsafe import encode_json, to_json
from ._results import AgentLimits, CodeRun, StopReason
from ._stateful import ConversationSession

if TYPE_CHECKING:
    from ._agent import Agent
    from ._transcript import Transcript

RUN_CODE: str = "run_code"
"""The name of the code-execution tool."""

DEFAULT_ENVIRONMENT = "Only the Python standard library is available (no third-party packages such as pandas)."
"""What `RunCode` tells the model about the interpreter's packages, by default (the default image)."""

TRUNCATION_MARKER = "[... {omitted:,} characters truncated ...]"
"""Inserted where output was cut; ``{omitted}`` is the number of characters left out."""

_MISSING_MODULE = re.compile(r"No module named '([^']+)'")


def explain_invalid(exc: pydantic.ValidationError) -> str:
    """The first few validation errors of a ``run_code`` call, as "path: message; ..."."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
        for err in exc.errors(include_url=False)[:5]
    )


def invalid_arguments_content(problem: str, *, hint: str) -> str:
    """The tool result a malformed ``run_code`` call gets: what was wrong, and a `hint` on how to call it right."""
    message = f"run_code: invalid arguments: {problem}"
    return to_json({"ok": False, "error": {"kind": "invalid_arguments", "message": message, "hint": hint}})


class RunCodeArguments(pydantic.BaseModel):
    """The arguments of a ``run_code`` call."""

    model_config = pydantic.ConfigDict(extra="forbid")

    code: str = pydantic.Field(description="The complete Python program to run.")
    language: Literal["python"] = "python"


@dataclass(frozen=True)
class RunCodeOutcome:
    """One handled ``run_code`` call.

    ``result`` is None when the call's arguments were invalid (nothing ran);
    ``content`` is the string to send back to the model as the tool result.
    """

    code: str | None
    result: Result | None
    content: str
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when the code ran to the end."""
        return self.result is not None and self.result.ok


def truncate(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, keeping the head and the tail around a marker."""
    if len(text) <= limit:
        return text
    head = max(0, limit * 2 // 3)
    tail = max(0, limit - head)
    omitted = len(text) - head - tail
    marker = TRUNCATION_MARKER.format(omitted=omitted)
    return f"{text[:head]}\n{marker}\n{text[len(text) - tail :] if tail else ''}"


def short_traceback(traceback: str, max_lines: int = 14) -> str:
    """The end of a guest traceback (the frames nearest the error), at most `max_lines` lines."""
    lines = traceback.rstrip("\n").splitlines()
    if len(lines) <= max_lines:
        return "\n".join(lines)
    kept = lines[-(max_lines - 2) :]
    return "\n".join([lines[0], f"  [... {len(lines) - len(kept) - 1} traceback lines omitted ...]", *kept])


def _code_line(code: str, lineno: int | None) -> str | None:
    if lineno is None or lineno < 1:
        return None
    lines = code.splitlines()
    return lines[lineno - 1].strip()[:300] if lineno <= len(lines) else None


def failure_hint(error: RunError, limits: Limits) -> str:
    """A one-line suggestion for the model on how to recover from `error`."""
    if error.kind == "syntax":
        return "The code did not compile: fix the syntax and call run_code again with the whole program."
    if error.kind == "timeout":
        return (
            f"The code ran longer than its {limits.timeout_s:g} s limit: do less work, use a faster algorithm, "
            "and never sleep or wait for input."
        )
    if error.kind == "fuel":
        return "The code used up its CPU budget: use a faster algorithm or process less data."
    if error.kind == "memory":
        return f"The code ran out of memory ({limits.memory_bytes // 2**20} MiB): keep less data in memory."
    if error.kind == "output_limit":
        return f"The code printed more than {limits.max_output_bytes:,} bytes: print summaries, not whole datasets."
    if error.kind == "tool":
        return "A tool call failed: read the message, fix the call's arguments (or catch tools.ToolError)."
    if error.type == "ModuleNotFoundError":
        match = _MISSING_MODULE.search(error.message)
        name = match[1] if match else "that module"
        return f"Module {name!r} is not installed in the sandbox: rewrite the code without it."
    if error.kind == "internal":
        return "The interpreter crashed; try a simpler approach."
    where = f" (line {error.lineno} of your code)" if error.lineno is not None else ""
    return f"Read the traceback{where}, fix the cause, and run the whole corrected program again."


def format_result(
    result: Result,
    *,
    limits: Limits | None = None,
    tool_calls: Sequence[ToolCallRecord] | None = None,
    max_output_chars: int = 4_000,
    max_traceback_lines: int = 14,
    session_note: str | None = None,
) -> str:
    """The model-facing summary of a run, as a compact JSON object (a string).

    Keys (empty ones are left out): ``ok``; ``stdout``, ``stderr`` and ``value``
    (each truncated to `max_output_chars` with `TRUNCATION_MARKER`); ``files``
    (name -> size in bytes of each file the code wrote); ``tool_calls`` (how
    many); on failure ``error`` with ``kind``, ``type``, ``message``, ``line``,
    ``code_line`` (the model's own source line), ``traceback`` (shortened) and
    ``hint``; ``note`` when the run produced nothing visible; ``session`` with
    `session_note` (a stateful ``run_code``: the call was rolled back, or the
    session was replaced by a new one).
    """
    limits = limits or Limits()
    out: dict[str, Any] = {"ok": result.ok}
    if session_note:
        out["session"] = session_note
    if result.error is not None:
        error = result.error
        info: dict[str, Any] = {
            "kind": error.kind,
            "type": error.type,
            "message": truncate(error.message or error.type, 1_000),
        }
        if error.lineno is not None:
            info["line"] = error.lineno
            line = _code_line(result.code, error.lineno)
            if line:
                info["code_line"] = line
        if error.traceback:
            info["traceback"] = truncate(short_traceback(error.traceback, max_traceback_lines), 3_000)
        info["hint"] = failure_hint(error, limits)
        out["error"] = info
    if result.stdout:
        out["stdout"] = truncate(result.stdout, max_output_chars)
    if result.stderr:
        out["stderr"] = truncate(result.stderr, max_output_chars)
    if result.value is not None:
        out["value"] = truncate(result.value, max_output_chars)
    if result.files:
        out["files"] = {name: len(data) for name, data in result.files.items()}
    calls = len(tool_calls) if tool_calls is not None else len(result.tool_calls)
    if calls:
        out["tool_calls"] = calls
    if result.ok and not result.stdout and result.value is None and not result.files:
        out["note"] = "The code ran but printed nothing and its last line is not an expression: print what you need."
    return encode_json(out).decode("utf-8")


def run_code_definition(
    *,
    tool_names: Sequence[str] = (),
    limits: Limits | None = None,
    environment: str = DEFAULT_ENVIRONMENT,
    with_files: Sequence[str] = (),
    stateful: bool = False,
) -> dict[str, Any]:
    """The strict OpenAI function-tool definition of ``run_code``.

    The description tells the model what the sandbox offers: a fresh
    interpreter per call (or, `stateful`, one session for all calls),
    `environment` (installed packages), the time limit,
    the ``tools`` module with `tool_names`, and input files `with_files`.
    """
    limits = limits or Limits()
    if stateful:
        what = "Run Python code in this conversation's isolated Python session"
        persistence = (
            "No network and no host filesystem. Variables, imports and files persist between calls, like a "
            "notebook: build on earlier results instead of recomputing them. A call stopped by a limit is "
            "rolled back (what it set is not kept)."
        )
    else:
        what = "Run a Python program in a fresh, isolated sandbox"
        persistence = (
            "No network and no host filesystem. Nothing persists between calls (variables, imports, files): "
            "each call must contain the whole program."
        )
    parts = [
        f"{what} and get back what it printed (stdout, stderr), "
        "the value of its last expression (like a REPL), the files it wrote, or the error with a traceback.",
        environment,
        persistence,
        f"Each call may run for at most {limits.timeout_s:g} s.",
        "Files written to the working directory are returned as artifacts (for example a chart).",
    ]
    if tool_names:
        names = ", ".join(sorted(tool_names))
        parts.append(
            f"`import tools` to call the host's tools as Python functions with keyword arguments: {names} "
            "(same arguments as the tool definitions); a failed call raises tools.ToolError."
        )
    if with_files:
        parts.append("Input files in the working directory (read-only): " + ", ".join(sorted(with_files)) + ".")
    code_description = (
        "The Python code to run (it may use variables and imports from earlier calls)."
        if stateful
        else "The complete Python program to run."
    )
    return {
        "type": "function",
        "function": {
            "name": RUN_CODE,
            "description": " ".join(parts),
            "parameters": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "description": code_description},
                    "language": {"type": "string", "enum": ["python"], "description": "Always 'python'."},
                },
                "required": ["code", "language"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


class RunCode:
    """The ``run_code`` tool bound to a sandbox: its definition and its handler.

    `files` are input files every run sees (read-only) in its working
    directory; the guest may always write new files there (they come back as
    artifacts in ``Result.files``).

    `stateful`: every call runs in one `wasmrun.Session` (made at the first
    call), so later code can use the variables, imports and files of earlier
    calls. When the session dies (out of memory, totals used up), the next
    call starts a new one and says so to the model (``session`` in the result
    JSON, and `session_note`); a call stopped by a limit is rolled back, and the
    model is told that too. `close` releases the session.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        files: Mapping[str, bytes | str] | None = None,
        limits: Limits | None = None,
        environment: str = DEFAULT_ENVIRONMENT,
        max_output_chars: int = 4_000,
        stateful: bool = False,
    ) -> None:
        if max_output_chars < 100:
            raise ValueError(f"max_output_chars must be >= 100, got {max_output_chars!r}")
        self.sandbox = sandbox
        self.files: dict[str, bytes | str] = dict(files or {})
        self.limits = limits or sandbox.limits
        self.environment = environment
        self.max_output_chars = max_output_chars
        self.stateful = stateful
        self._sessions = ConversationSession(sandbox, self.limits) if stateful else None

    @property
    def session(self) -> Session | None:
        """The current session (stateful, after the first call), else None."""
        return self._sessions.session if self._sessions is not None else None

    @property
    def session_note(self) -> str | None:
        """What the model should know about the session after the last `run` (stateful only), or None."""
        return self._sessions.note if self._sessions is not None else None

    def close(self) -> None:
        """Release the session, if any (the next stateful call starts a new one)."""
        if self._sessions is not None:
            self._sessions.close()

    def __enter__(self) -> RunCode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def definition(self) -> dict[str, Any]:
        """The strict OpenAI function-tool definition, describing this sandbox's tools and files."""
        names = list(self.sandbox.tools.tools) if self.sandbox.tools is not None else []
        return run_code_definition(
            tool_names=names,
            limits=self.limits,
            environment=self.environment,
            with_files=list(self.files),
            stateful=self.stateful,
        )

    @staticmethod
    def parse(arguments: str | bytes | Mapping[str, Any]) -> RunCodeArguments:
        """Validate a call's arguments (the model's JSON string). Raises ``pydantic.ValidationError``."""
        if isinstance(arguments, (str, bytes)):
            return RunCodeArguments.model_validate_json(arguments)
        return RunCodeArguments.model_validate(dict(arguments))

    def run(self, code: str, *, limits: Limits | None = None) -> Result:
        """Run `code` with the input files (and so a writable working directory): fresh, or in the session."""
        if self._sessions is None:
            return self.sandbox.run(code, limits=limits or self.limits, files=self.files)
        return self._sessions.run(code, limits or self.limits, self.files)

    def handle(self, arguments: str | bytes | Mapping[str, Any], *, limits: Limits | None = None) -> RunCodeOutcome:
        """Handle one ``run_code`` call from a model: validate, run, and format the result for the model."""
        try:
            parsed = self.parse(arguments)
        except pydantic.ValidationError as exc:
            problem = explain_invalid(exc)
            content = invalid_arguments_content(
                problem, hint='Call run_code with a JSON object {"code": "<python program>", "language": "python"}.'
            )
            return RunCodeOutcome(code=None, result=None, content=content, problem=problem)
        effective = limits or self.limits
        result = self.run(parsed.code, limits=effective)
        content = format_result(
            result, limits=effective, max_output_chars=self.max_output_chars, session_note=self.session_note
        )
        return RunCodeOutcome(code=parsed.code, result=result, content=content)


class _RunCodeStep:
    """Handles one ``run_code`` call of the model; mixed into the conversation, whose state it updates."""

    agent: Agent
    limits: AgentLimits
    runner: RunCode
    context: RunContext
    transcript: Transcript
    turns: int
    failures: int
    failures_in_a_row: int
    sandbox_time: float
    code_runs: list[CodeRun]
    files: dict[str, bytes]
    stop_message: str
    _budget_hit: bool

    def _fail(self, reason: str) -> None:
        raise NotImplementedError

    def _limit(self, reason: StopReason, message: str) -> None:
        raise NotImplementedError

    def _limit_tool_calls(self) -> None:
        raise NotImplementedError

    def _record_tool_call(self, record: ToolCallRecord, **where: Any) -> None:
        raise NotImplementedError

    def _run_code(self, call_id: str, arguments: str) -> str:
        try:
            parsed = RunCode.parse(arguments)
        except pydantic.ValidationError as exc:
            problem = explain_invalid(exc)
            content = invalid_arguments_content(
                problem, hint='Call run_code with {"code": "<the whole Python program>", "language": "python"}.'
            )
            self._fail(f"invalid run_code arguments ({problem})")
            return content
        remaining = self.limits.max_sandbox_s - self.sandbox_time
        if remaining <= 0.001:
            self._limit_sandbox_time()
            return to_json({"ok": False, "error": f"not run: {self.stop_message}"})
        limits = self.runner.limits
        if remaining < limits.timeout_s:
            limits = replace(limits, timeout_s=remaining)
        index = len(self.code_runs) + 1
        attempt = self.failures + 1
        first_record = len(self.context.records)
        self.context.code = parsed.code
        try:
            result = self.runner.run(parsed.code, limits=limits)
        finally:
            self.context.code = None
        with self.context.lock:
            guest = tuple(self.context.records[first_record:])
        self.sandbox_time += result.stats.duration_s
        note = self.runner.session_note
        content = format_result(
            result,
            limits=limits,
            tool_calls=guest,
            max_output_chars=self.agent.max_output_chars,
            session_note=note,
        )
        self.code_runs.append(
            CodeRun(
                index=index,
                call_id=call_id,
                turn=self.turns,
                attempt=attempt,
                code=parsed.code,
                result=result,
                tool_calls=guest,
                feedback=content,
            )
        )
        error = result.error
        self.transcript.event(
            "code_run",
            index=index,
            call_id=call_id,
            attempt=attempt,
            code=parsed.code,
            ok=result.ok,
            stdout=result.stdout,
            stderr=result.stderr,
            value=result.value,
            error=msgspec.structs.asdict(error) if error is not None else None,
            files={name: len(data) for name, data in result.files.items()},
            duration_s=round(result.stats.duration_s, 6),
            fuel_used=result.stats.fuel_used,
            timeout_s=limits.timeout_s,
            guest_tool_calls=len(guest),
            session_id=result.stats.session_id,
            session_call=result.stats.session_call,
            session_note=note,
        )
        for record in guest:  # after the run's event, so a timeline reads "the code ran and made these calls"
            self._record_tool_call(record, code_run=index)
        if error is None:
            self.failures_in_a_row = 0
            self.files.update(result.files)
        else:
            self._fail(f"{error.kind} error ({error.type}: {truncate(error.message, 200)})")
        if self.sandbox_time >= self.limits.max_sandbox_s - 0.001:
            self._limit_sandbox_time()
        if self._budget_hit:
            self._limit_tool_calls()
        return content

    def _limit_sandbox_time(self) -> None:
        self._limit(
            "sandbox_time",
            f"Stopped: code ran for {self.sandbox_time:.1f} s in all, the conversation's budget is "
            f"{self.limits.max_sandbox_s:g} s (AgentLimits.max_sandbox_s).",
        )
