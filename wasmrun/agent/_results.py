"""What a conversation is bounded by and what it produces: `AgentLimits`, `AgentResult` and their parts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._errors import WasmrunError
from .._result import Result
from ..tools import ToolCallRecord

StopReason = Literal["answered", "attempts_exhausted", "max_turns", "max_tool_calls", "sandbox_time"]
"""Why a conversation ended: a validated answer, or the limit that stopped it."""

ValidationKind = Literal["empty", "schema", "validator", "review"]


class AgentError(WasmrunError):
    """The agent could not talk to the model (e.g. the response had no choices)."""


@dataclass(frozen=True)
class AgentLimits:
    """Limits of one conversation.

    * ``max_attempts``: failed tries in a row (code that failed, or a final
      answer that failed validation) before the agent stops retrying.
    * ``max_turns``: model requests (main turns and review turns); one more
      wrap-up turn without tools may follow when a limit stops the conversation.
    * ``max_tool_calls``: calls of registered tools, by the model directly and by
      guest code together; a call beyond it is denied and ends the conversation.
    * ``max_sandbox_s``: total wall-clock time of all code runs; each run's
      deadline is shortened to what is left.
    * ``max_tool_result_chars``: longest direct tool result shown to the model
      (longer ones are cut, with a note to fetch the data in code instead).
    """

    max_attempts: int = 3
    max_turns: int = 20
    max_tool_calls: int = 50
    max_sandbox_s: float = 120.0
    max_tool_result_chars: int = 20_000

    def __post_init__(self) -> None:
        for name in ("max_attempts", "max_turns", "max_tool_calls", "max_tool_result_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AgentLimits.{name} must be an int >= 1, got {value!r}")
        seconds = self.max_sandbox_s
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 86_400:
            raise ValueError(f"AgentLimits.max_sandbox_s must be a number of seconds in (0, 86400], got {seconds!r}")


@dataclass(frozen=True)
class CodeRun:
    """One ``run_code`` execution: the code in full, the sandbox's result and what the model was shown."""

    index: int
    call_id: str
    turn: int
    attempt: int
    code: str
    result: Result
    tool_calls: tuple[ToolCallRecord, ...]
    feedback: str

    @property
    def ok(self) -> bool:
        """True when the code ran to the end."""
        return self.result.ok


@dataclass(frozen=True)
class ValidationOutcome:
    """The verdict of one validation step on a proposed final answer."""

    kind: ValidationKind
    passed: bool
    message: str


@dataclass(frozen=True)
class Candidate:
    """A proposed final answer, as a validator sees it.

    ``output`` is the parsed object when the agent has an ``output_schema``
    (else None); ``files`` are the artifacts of the successful code runs so far.
    """

    text: str
    output: Any
    code_runs: tuple[CodeRun, ...]
    files: Mapping[str, bytes]


Validator = Callable[[Candidate], "bool | str | None"]
"""Checks a `Candidate`: True/None accept; False or a string (the reason) reject; an exception rejects too."""


@dataclass(frozen=True)
class AgentResult:
    """How a conversation ended, and everything that happened in it.

    * ``answer``: the final answer text; when a limit stopped the conversation
      it ends with a note saying which (``"Note: Attempts ran out: ..."``).
    * ``output``: the parsed ``output_schema`` object (None without a schema or
      when the answer was not accepted).
    * ``attempts``: tries used: every failure (failed code, rejected answer)
      starts a new attempt, so ``attempts == failures + 1`` (1 = everything worked
      the first time), or ``failures`` when attempts ran out.
    * ``code_runs``, ``tool_calls`` (direct and guest, in order), ``validations``.
    * ``files``: artifacts written by successful code runs (a later run's file
      replaces an earlier one of the same name).
    """

    answer: str
    output: Any
    stop_reason: StopReason
    attempts: int
    failures: int
    turns: int
    code_runs: tuple[CodeRun, ...]
    tool_calls: tuple[ToolCallRecord, ...]
    validations: tuple[ValidationOutcome, ...]
    files: Mapping[str, bytes]
    messages: tuple[dict[str, Any], ...]
    events: tuple[dict[str, Any], ...]
    transcript_path: Path | None
    sandbox_time_s: float
    usage: Mapping[str, int]
    run_id: str

    @property
    def ok(self) -> bool:
        """True when the model gave an answer that passed validation."""
        return self.stop_reason == "answered"

    @property
    def exhausted(self) -> bool:
        """True when attempts or a conversation limit ran out before an accepted answer."""
        return self.stop_reason != "answered"
