"""The outcome of one run: frozen, typed records that are safe to log and serialise."""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec

from ._limits import Limits
from ._runstate import RunState
from .tools._audit import ToolCallRecord

ErrorKind = Literal[
    "syntax", "exception", "timeout", "fuel", "memory", "output_limit", "tool", "cancelled", "internal"
]
"""Why a run failed.

* ``syntax``: the code could not be compiled (also: NUL bytes, lone surrogates,
  code over ``Limits.max_code_bytes``, nesting too deep for the parser).
* ``exception``: the code raised (including ``SystemExit`` with a non-zero code).
* ``timeout``: the wall-clock deadline passed (``Limits.timeout_s``).
* ``fuel``: the CPU budget ran out (``Limits.fuel``).
* ``memory``: the memory cap was hit (``MemoryError`` or a refused allocation).
* ``output_limit``: stdout or stderr exceeded ``Limits.max_output_bytes``.
* ``tool``: a tool call failed and the code did not catch ``tools.ToolError``.
* ``cancelled``: the caller stopped the run (an `AsyncSandbox` run whose task was cancelled).
* ``internal``: the guest crashed in a way none of the above explains.
"""


class RunError(msgspec.Struct, frozen=True, kw_only=True):
    """Why a run failed. ``lineno`` and ``traceback`` refer to the user's own code."""

    kind: ErrorKind
    type: str
    message: str
    traceback: str = ""
    lineno: int | None = None


class RunStats(msgspec.Struct, frozen=True, kw_only=True):
    """What a run consumed.

    ``fuel_used`` is exact for a run that returns or runs out of fuel, and a
    *lower bound* for a run stopped at its deadline (or cancelled, or by
    Ctrl-C): compiled wasm keeps the fuel counter of the running function in a
    register and writes it back only at calls and returns; the epoch check that
    stops the guest calls into the runtime without writing it back first, so
    even the store's fuel read inside the epoch-deadline callback is stale (a
    ``while True: pass`` stopped after 1 s reports ~10**6 of the ~5*10**8 it used).

    ``memory_bytes`` is the guest's linear memory size at the end of the run
    where the image can tell (scientific), else None. The default image cannot:
    its guest is a component whose memory is not exported, and neither
    wasmtime-py nor wasmtime's C API reaches a component instance's core memory
    (the store limiter takes fixed limits, without a callback that would see
    growth), and the guest itself cannot read ``memory.size`` from Python.
    """

    duration_s: float
    fuel_used: int
    memory_bytes: int | None
    tool_calls: int = 0
    #: The session that ran this call (`Session.id`), or None for a one-shot run.
    session_id: str | None = None
    #: Which call of that session this was: 1 for its first ``run``, 2 for the next, ... (None: one-shot).
    session_call: int | None = None


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a run produced.

    ``stdout``/``stderr`` hold what the guest printed (up to the output cap);
    ``value`` is the ``repr`` of the last expression, like a REPL, or ``None``.
    ``files`` are the files the run created in its working directory;
    ``artifacts`` are named results the image captured on its own, e.g. the
    scientific image's matplotlib figures as PNG bytes (``"figure-1.png"``).
    """

    code: str
    stdout: str
    stderr: str
    value: str | None
    error: RunError | None
    stats: RunStats
    exit_code: int | None = None
    files: dict[str, bytes] = msgspec.field(default_factory=dict)
    tool_calls: tuple[ToolCallRecord, ...] = ()
    artifacts: dict[str, bytes] = msgspec.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the code ran to the end (or exited with code 0)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data (bytes are base64), e.g. for ``--json`` output."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        data["ok"] = self.ok
        return data


def failed_run(code: str, kind: ErrorKind, type_: str, message: str, started: float, fuel: int = 0) -> Result:
    """The `Result` of a run stopped before the guest produced anything: its error and how long it took.

    `started` is the run's ``time.perf_counter()`` at its start; `fuel` what it used, if anything.
    """
    return Result(
        code=code,
        stdout="",
        stderr="",
        value=None,
        error=RunError(kind=kind, type=type_, message=message),
        stats=RunStats(duration_s=time.perf_counter() - started, fuel_used=fuel, memory_bytes=None),
    )


class GuestError(msgspec.Struct, frozen=True):
    """The error record the guest shim reports (see python-wasm/guest/wasmrun_core.py)."""

    kind: Literal["syntax", "exception", "memory", "tool"]
    type: str
    message: str
    traceback: str
    lineno: int | None


class GuestOutcome(msgspec.Struct, frozen=True):
    """What the guest's ``run`` export returns, decoded with a typed decoder."""

    value: str | None
    value_truncated: bool
    error: GuestError | None
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""


GUEST_OUTCOME = msgspec.json.Decoder(GuestOutcome)


def classify_trap(state: RunState, fuel_left: int, limits: Limits, trap: str, stderr: str) -> RunError:
    """Name the reason a guest trapped, from this run's own bookkeeping (component traps carry no code)."""
    if state.cancelled:
        return RunError(kind="cancelled", type="Cancelled", message="the run was cancelled by its caller")
    if state.output_exceeded:
        return RunError(
            kind="output_limit",
            type="OutputLimitExceeded",
            message=f"{state.output_exceeded} exceeded {limits.max_output_bytes:,} bytes "
            "(Limits.max_output_bytes); output truncated",
        )
    if state.timed_out or "epoch deadline" in trap or "interrupt" in trap:
        return RunError(
            kind="timeout",
            type="TimeoutError",
            message=f"the run exceeded its {limits.timeout_s:g}s deadline (Limits.timeout_s)",
        )
    if fuel_left == 0 or "all fuel consumed" in trap:
        return RunError(
            kind="fuel", type="FuelExhausted", message=f"the run used all of its {limits.fuel:,} fuel (Limits.fuel)"
        )
    if "memory allocation" in stderr or "MemoryError" in stderr or "out of memory" in trap:
        return RunError(
            kind="memory",
            type="MemoryError",
            message=f"the guest ran out of memory (Limits.memory_bytes = {limits.memory_bytes:,})",
        )
    if "call stack exhausted" in trap or "stack overflow" in trap:
        return RunError(
            kind="exception",
            type="RecursionError",
            message="the guest's native stack overflowed (recursion or nesting too deep)",
        )
    if state.internal_error:
        return RunError(kind="internal", type="HostError", message=state.internal_error)
    # wasmtime's text ends with the cause ("wasm trap: wasm `unreachable` instruction executed").
    cause = next((line.strip() for line in reversed(trap.splitlines()) if line.strip().startswith("wasm trap")), "")
    message = f"the guest crashed ({cause or 'wasm trap'})"
    return RunError(kind="internal", type="GuestCrash", message=message, traceback=trap)
