"""`Session`: one guest interpreter kept alive across calls, for multi-step work (agents, notebooks, a REPL).

This module is long because a session's calls, rollback by re-execution, forks and snapshots all
work on one private state (instance, history, counters, virtual clock); split, that state would leak.

The user-facing rules (limits and totals, rollback, death, fork, snapshots,
seeds) are in the README's "Sessions" section; the reasons, in short:

* One instance per session, never shared with another session or a one-shot run.
* wasmtime cannot resume a guest after a trap (a component instance refuses all
  later calls; the scientific image's ``turn`` reports -1), and a trap may land
  mid-allocation, so a call stopped by a limit is *rolled back*: the session is
  rebuilt at its next call by re-executing its completed calls in a fresh
  instance (same seed and files, tool calls answered from the record).
* Where continuing could give a wrong answer (memory exhausted, a crash, a
  re-execution that does not reproduce a recorded outcome), the session dies
  and later calls raise `SessionDeadError` with the reason.
* A fork or snapshot copies the guest's memory where the image can
  (`Backend.copy`/`dump`, scientific) and re-executes the history otherwise.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import wasmtime

from . import _sigint, _snapshot
from ._arguments import check_call, check_files, check_totals
from ._determinism import VirtualEnvironment
from ._errors import SessionDeadError, SnapshotError
from ._limits import Limits
from ._result import Result, RunError
from ._runstate import RunState, Trap
from .tools import RunContext

if TYPE_CHECKING:
    from ._sandbox import Sandbox

__all__ = ["Session", "restore"]

# A recorded tool call: (name, arguments JSON, ok, result JSON or error message).
ToolAnswer = tuple[str, str, bool, str]
SessionDispatch = Callable[[RunContext, RunState, str, str], "tuple[bool, str]"]


@dataclass(frozen=True, slots=True)
class SessionTurn:
    """What makes a call a session's call: which session and call, its seed, how its tool calls are answered."""

    id: str
    call: int
    seed: int
    dispatch: SessionDispatch | None  # None: the sandbox's registry (or "no tools")
    virtual: VirtualEnvironment | None = None  # a deterministic session's clocks and entropy, across calls


@dataclass(frozen=True, slots=True)
class _Call:
    """A completed call, as re-execution needs it."""

    number: int
    code: str
    limits: Limits
    files: dict[str, bytes] | None
    tools: tuple[ToolAnswer, ...]
    error_type: str | None  # the outcome to reproduce: None (ok) or the exception's type name


class _Holder:
    """The session's instance, reachable by the finalizer without keeping the session alive."""

    __slots__ = ("instance",)

    def __init__(self) -> None:
        self.instance: Any = None


def _release(backend: Any, holder: _Holder) -> None:
    instance, holder.instance = holder.instance, None
    if instance is not None:
        backend.close(instance)


class Session:
    """A guest interpreter that keeps its state across `run` calls. Make one with `Sandbox.session()`.

    >>> with Sandbox() as sandbox, sandbox.session() as s:
    ...     _ = s.run("rows = [3, 1, 2]")
    ...     s.run("sorted(rows)").value
    '[1, 2, 3]'

    Each result says which session and call it was (``result.stats.session_id``,
    ``result.stats.session_call``). A session is used by one call at a time (calls
    from several threads wait for each other). See the module docs of
    ``wasmrun._session`` (and the README) for limits, rollback and forks.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        limits: Limits,
        *,
        total_fuel: int,
        lifetime_s: float,
        idle_timeout_s: float,
        seed: int,
        history: list[_Call] | None = None,
        calls: int = 0,
        fuel_used: int = 0,
    ) -> None:
        self._sandbox = sandbox
        self._backend = sandbox._backend
        #: A short random identifier, recorded in every result (``RunStats.session_id``).
        self.id = secrets.token_hex(6)
        #: The default per-call limits; ``limits.memory_bytes`` is the session's memory cap.
        self.limits = limits
        self.total_fuel = total_fuel
        self.lifetime_s = lifetime_s
        self.idle_timeout_s = idle_timeout_s
        #: The seed of the guest's ``random`` (and numpy's global generator), set at the first call.
        self.seed = seed
        self._history: list[_Call] = list(history or ())
        self._calls = calls
        self._fuel_used = fuel_used
        self._created = self._last_used = time.monotonic()
        self._dead: str | None = None
        self._lock = threading.Lock()
        self._holder = _Holder()
        # A deterministic session's one virtual clock and entropy stream, across its calls.
        self._virtual = VirtualEnvironment(seed) if sandbox.deterministic else None
        # An unclosed, unreachable session must not keep its store (~15 MB and more) alive.
        self._finalizer = weakref.finalize(self, _release, self._backend, self._holder)

    # -- public ------------------------------------------------------------------------
    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def calls(self) -> int:
        """How many calls `run` has started (the last result's ``stats.session_call``)."""
        return self._calls

    @property
    def fuel_used(self) -> int:
        """Fuel used by all calls so far (counted against ``total_fuel``)."""
        return self._fuel_used

    @property
    def alive(self) -> bool:
        """False once the session is closed or dead (then `run` raises `SessionDeadError`)."""
        return self._dead is None and not self._expired()

    @property
    def dead_reason(self) -> str | None:
        """Why the session is dead or closed, or None while it is alive."""
        self._expired()
        return self._dead

    def close(self, reason: str = "it was closed") -> None:
        """Release the guest; later calls raise `SessionDeadError`. A call in progress finishes first."""
        if self._dead is None:
            self._dead = reason
        if self._lock.acquire(blocking=False):
            try:
                self._discard()
            finally:
                self._lock.release()
        # else: the running call releases the instance when it ends (it sees `_dead`).

    def run(
        self,
        code: str,
        *,
        limits: Limits | None = None,
        files: Mapping[str, bytes | str] | None = None,
    ) -> Result:
        """Run `code` in the session and return what happened. Never raises for bad code.

        `limits` replaces the session's per-call limits for this call (except
        ``memory_bytes``). `files` are more read-only input files in ``/work``;
        files from earlier calls, and files the guest wrote, stay. In a session,
        ``Result.files`` holds the scratch files as they are after this call.

        Raises `SessionDeadError` when the session can take no more calls.
        """
        return self._run(code, limits, files, None)

    def _run(
        self, code: str, limits: Limits | None, files: Mapping[str, bytes | str] | None, cancel: threading.Event | None
    ) -> Result:
        """`run`, stoppable from another thread (`AsyncSession`): a cancelled call is rolled back like a timeout."""
        inputs = check_call(code, limits, files, attempt="run code in a session")
        limits = limits or self.limits
        with self._lock:
            self._check_alive()
            self._calls += 1
            call = self._calls
            started = time.perf_counter()
            refused = self._sandbox._refuse(code, limits, started)
            if refused is not None:
                return _in_session(refused, self.id, call)
            try:
                with _sigint.deferred():  # re-execution runs guest code too (see wasmrun._sigint)
                    instance = self._ensure_instance(code)
                    return self._run_call(instance, call, code, limits, inputs, started, cancel)
            finally:
                if self._dead is not None:
                    self._discard()

    def fork(self) -> Session:
        """A new session that starts from a copy of this one's state; the two never affect each other.

        The fork continues the call numbering and the fuel count, shares the
        limits and totals, and has its own id and lifetime. It is made by copying
        the guest's memory and files where the image allows (scientific) and by
        re-executing this session's calls otherwise (default image), which costs
        what those calls cost. Raises `SessionDeadError` if this session is dead.
        """
        with self._lock:
            self._check_alive()
            child = self._child()
            try:
                copied = None
                if self._holder.instance is not None:
                    copied = self._backend.copy(self._holder.instance, self.limits.memory_bytes)
                if copied is not None:
                    child._holder.instance = copied
                    child._virtual = self._virtual.copy() if self._virtual is not None else None
                else:
                    with _sigint.deferred():
                        child._ensure_instance(self._history[0].code if self._history else "")
            except BaseException:
                child.close()
                raise
            return child

    def snapshot(self) -> bytes:
        """The session's state as bytes; `Sandbox.restore` turns them into a new session, in this process or another.

        The bytes hold the call history (code, input files, recorded tool
        results), the limits and totals used so far, and, on images that can dump
        their memory (scientific), the guest's memory and files. Without the
        memory, a restore re-executes the history. Only the same wasmrun version
        and image restore it. The bytes are compressed but not encrypted: they
        contain the session's data.
        """
        with self._lock:
            self._check_alive()
            state = None
            if self._holder.instance is not None:
                state = self._backend.dump(self._holder.instance)
            body = _snapshot.SnapshotBody(
                limits=dataclasses.asdict(self.limits),
                total_fuel=self.total_fuel,
                lifetime_s=self.lifetime_s,
                idle_timeout_s=self.idle_timeout_s,
                seed=self.seed,
                calls=self._calls,
                fuel_used=self._fuel_used,
                history=[
                    _snapshot.SnapshotCall(
                        number=c.number,
                        code=c.code,
                        limits=dataclasses.asdict(c.limits),
                        files=c.files,
                        tools=list(c.tools),
                        error_type=c.error_type,
                    )
                    for c in self._history
                ],
                state=state,
                virtual=self._virtual.position() if self._virtual is not None and state is not None else None,
            )
            return _snapshot.pack(self._sandbox.image, self._backend.image_id(), body)

    def __repr__(self) -> str:
        status = "alive" if self.alive else f"dead: {self._dead}"
        return f"<wasmrun.Session {self.id} image={self._sandbox.image!r} calls={self._calls} {status}>"

    # -- internals -----------------------------------------------------------------------
    def _discard(self) -> None:
        """Close the current instance, if any (the finalizer does the same once, at collection)."""
        _release(self._backend, self._holder)

    def _expired(self) -> bool:
        if self._dead is not None:
            return True
        now = time.monotonic()
        if now - self._last_used > self.idle_timeout_s:
            self._dead = f"it was idle for more than {self.idle_timeout_s:g}s (idle_timeout_s)"
        elif now - self._created >= self.lifetime_s:
            self._dead = f"it reached its lifetime of {self.lifetime_s:g}s (lifetime_s)"
        return self._dead is not None

    def _check_alive(self) -> None:
        if self._sandbox._closed and self._dead is None:
            self._dead = "its sandbox was closed"
        if self._expired():
            self._discard()
            assert self._dead is not None
            raise SessionDeadError(self._dead)

    def _child(self) -> Session:
        return Session(
            self._sandbox,
            self.limits,
            total_fuel=self.total_fuel,
            lifetime_s=self.lifetime_s,
            idle_timeout_s=self.idle_timeout_s,
            seed=self.seed,
            history=self._history,
            calls=self._calls,
            fuel_used=self._fuel_used,
        )

    def _ensure_instance(self, code: str) -> Any:
        """The session's instance; after a rolled-back call, a fresh one rebuilt by re-executing the history."""
        instance = self._holder.instance
        if instance is not None:
            return instance
        hint = self._history[0].code if self._history else code
        if self._virtual is not None:  # re-execution reads clocks and entropy again, from the start
            self._virtual = VirtualEnvironment(self.seed)
        try:
            instance = self._sandbox._fresh_instance(self.limits.memory_bytes, hint)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            self._dead = f"could not start an interpreter within its memory cap: {exc}"
            raise SessionDeadError(self._dead) from None
        self._holder.instance = instance
        for past in self._history:
            answers = iter(past.tools)
            diverged: list[str] = []
            outcome = self._sandbox._call(
                instance,
                past.code,
                dataclasses.replace(past.limits, memory_bytes=self.limits.memory_bytes),
                time.perf_counter(),
                past.files or {},
                session=SessionTurn(self.id, past.number, self.seed, _replayer(answers, diverged), self._virtual),
            )
            if outcome.interrupted:  # Ctrl-C: the state is rebuilt on the next call, the session lives on
                self._discard()
                raise KeyboardInterrupt
            error = outcome.result.error
            got = None if error is None else error.type
            if outcome.trapped or got != past.error_type or diverged or next(answers, None) is not None:
                detail = diverged[0] if diverged else f"{past.error_type or 'success'} before, {got or 'success'} now"
                self._dead = (
                    f"re-executing call {past.number} to restore its state did not reproduce it ({detail}); "
                    "its code depends on something besides its seed, inputs and tool results (e.g. the clock)"
                )
                self._discard()
                raise SessionDeadError(self._dead)
        return instance

    def _run_call(
        self, instance: Any, call: int, code: str, limits: Limits, inputs: dict[str, bytes] | None, started: float,
        cancel: threading.Event | None,
    ) -> Result:  # fmt: skip
        now = time.monotonic()
        fuel_left = self.total_fuel - self._fuel_used
        life_left = self.lifetime_s - (now - self._created)
        effective = dataclasses.replace(
            limits,
            memory_bytes=self.limits.memory_bytes,
            fuel=max(1, min(limits.fuel, fuel_left)),
            timeout_s=max(1e-3, min(limits.timeout_s, life_left)),
        )
        recorded: list[ToolAnswer] = []
        registry = self._sandbox.tools
        dispatch = None
        if registry is not None:

            def dispatch(context: RunContext, run: RunState, name: str, args: str) -> tuple[bool, str]:
                ok, payload = registry.dispatch(context, run, name, args)
                recorded.append((name, args, ok, payload))
                return ok, payload

        outcome = self._sandbox._call(
            instance,
            code,
            effective,
            started,
            # A session always has a /work (even without input files): the guest's libc looks for
            # its preopened directories once, and later calls may bring files.
            inputs or {},
            session=SessionTurn(self.id, call, self.seed, dispatch, virtual=self._virtual),
            cancel=cancel,
        )
        result = outcome.result
        self._fuel_used += result.stats.fuel_used
        self._last_used = time.monotonic()
        error = result.error
        if outcome.trapped or (error is not None and error.kind == "memory"):
            if outcome.trapped:
                # The instance cannot be called again: roll back to the last completed call (see module docs).
                self._discard()
            # (A close() from another thread during the call keeps its own reason.)
            self._dead = self._dead or self._death(error, effective, limits, call)
        else:
            self._history.append(
                _Call(call, code, limits, inputs, tuple(recorded), None if error is None else error.type)
            )
        if outcome.interrupted:  # Ctrl-C: rolled back like any stopped call, then the caller hears of it
            raise KeyboardInterrupt
        return result

    def _death(self, error: RunError | None, effective: Limits, limits: Limits, call: int) -> str | None:
        """Why a stopped call kills the session, or None when it is only rolled back."""
        kind = error.kind if error is not None else "internal"
        if kind == "memory":
            return f"call {call} ran out of memory (memory cap {effective.memory_bytes:,} bytes)"
        if kind == "internal":
            what = error.message if error is not None else "no outcome"
            return f"the interpreter crashed in call {call} ({what})"
        if kind == "fuel" and effective.fuel < limits.fuel:
            return f"it used all of its total fuel ({self.total_fuel:,}, total_fuel) in call {call}"
        if kind == "timeout" and effective.timeout_s < limits.timeout_s:
            return f"it reached its lifetime of {self.lifetime_s:g}s (lifetime_s) in call {call}"
        return None


def _replayer(answers: Iterator[ToolAnswer], diverged: list[str]) -> Any:
    """Answer a re-executed call's tool calls from the recorded results, in order; never call a tool again."""

    def replay(context: RunContext, run: RunState, name: str, args: str) -> tuple[bool, str]:
        answer = next(answers, None)
        if answer is None or answer[0] != name or answer[1] != args:
            diverged.append(f"tool call {name}({args[:80]}) was not the recorded one")
            raise Trap("re-execution diverged from the recorded tool calls")
        return answer[2], answer[3]

    return replay


def _in_session(result: Result, session_id: str, call: int) -> Result:
    stats = msgspec.structs.replace(result.stats, session_id=session_id, session_call=call)
    return msgspec.structs.replace(result, stats=stats)


# ----------------------------------------------------------------------------- options


def new_seed(seed: int | None) -> int:
    """The sandbox's seed, or a random one: re-execution must reproduce the guest's random draws."""
    return seed if seed is not None else secrets.randbits(63)


# ----------------------------------------------------------------------------- restore


def restore(sandbox: Sandbox, data: bytes) -> Session:
    """A new session of `sandbox` from `Session.snapshot()` bytes (see `Sandbox.restore`)."""
    body = _snapshot.unpack(data, sandbox.image, sandbox._backend.image_id())
    try:
        limits = Limits(**body.limits)
        history = [
            _Call(c.number, c.code, Limits(**c.limits), check_files(c.files), tuple(c.tools), c.error_type)
            for c in body.history
        ]
        totals = check_totals(limits, body.total_fuel, body.lifetime_s, body.idle_timeout_s)
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"the snapshot is damaged: {exc}") from None
    session = Session(
        sandbox,
        limits,
        total_fuel=totals[0],
        lifetime_s=totals[1],
        idle_timeout_s=totals[2],
        seed=body.seed,
        history=history,
        calls=body.calls,
        fuel_used=body.fuel_used,
    )
    try:
        if body.state is not None:
            session._holder.instance = sandbox._backend.load(body.state, limits.memory_bytes)
            if session._virtual is not None and body.virtual is not None:
                session._virtual = VirtualEnvironment.at(body.seed, body.virtual)
        else:
            session._ensure_instance("")
    except ValueError as exc:
        session.close()
        raise SnapshotError(f"the snapshot's guest state cannot be loaded: {exc}") from None
    except BaseException:
        session.close()
        raise
    return session
