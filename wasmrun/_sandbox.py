"""`Sandbox`: run untrusted Python in a fresh, limited CPython-on-WASI instance."""

from __future__ import annotations

import json
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import msgspec
import wasmtime

from . import _deadline, _sigint, _signals, _workers, images
from ._arguments import check_call, check_totals
from ._determinism import VirtualEnvironment
from ._errors import SandboxClosedError
from ._limits import Limits, check_limits
from ._result import GUEST_OUTCOME, Result, RunError, RunStats, classify_trap, failed_run
from ._runstate import RunState, Trap, enter_run, leave_run
from .images import Backend, GuestTrap, InstancePool
from .tools import RunContext, ToolRegistry

if TYPE_CHECKING:
    from ._session import Session, SessionTurn

ToolDispatch = Callable[[RunState, str, str], Any]

EXECUTORS = ("auto", "inline", "processes")
"""Where `Sandbox` runs guests (``Sandbox(executor=...)``)."""


@dataclass(frozen=True, slots=True)
class CallOutcome:
    result: Result
    trapped: bool  # the guest was stopped by a trap: its instance cannot be called again
    interrupted: bool = False  # Ctrl-C stopped it: the caller raises KeyboardInterrupt once it cleaned up


class SandboxOptions(TypedDict, total=False):
    """`Sandbox`'s keyword arguments (each documented there), for what passes them on (`AsyncSandbox`)."""

    limits: Limits | None
    tools: ToolRegistry | None
    seed: int | None
    prewarm: int | None
    image: str
    executor: str
    deterministic: bool


class SessionOptions(TypedDict, total=False):
    """`Sandbox.session`'s keyword arguments (each documented there), for what passes them on (`AsyncSandbox`)."""

    limits: Limits | None
    total_fuel: int | None
    lifetime_s: float
    idle_timeout_s: float


def check_options(options: SandboxOptions) -> None:
    """Raise the TypeError or ValueError ``Sandbox(**options)`` raises for a bad argument, before any work."""
    unknown = sorted(options.keys() - SandboxOptions.__optional_keys__)
    if unknown:
        known = ", ".join(SandboxOptions.__annotations__)
        raise TypeError(f"unexpected argument(s) {', '.join(unknown)}; the arguments are {known}")
    limits, seed, tools = options.get("limits"), options.get("seed"), options.get("tools")
    prewarm = options.get("prewarm")
    deterministic = options.get("deterministic", False)
    image = options.get("image", "default")
    executor = options.get("executor", "auto")
    check_limits(limits)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not isinstance(deterministic, bool):
        raise TypeError(f"deterministic must be a bool, got {type(deterministic).__name__}")
    if tools is not None and not isinstance(tools, ToolRegistry):
        raise TypeError(f"tools must be a wasmrun.ToolRegistry, got {type(tools).__name__}")
    if not isinstance(image, str):
        raise TypeError(f"image must be a str, got {type(image).__name__}")
    if image not in images.IMAGES:
        raise ValueError(f"unknown image {image!r}; available: {', '.join(map(repr, images.IMAGES))}")
    bad_prewarm = isinstance(prewarm, bool) or not isinstance(prewarm, int) or not 0 <= prewarm <= 64
    if prewarm is not None and bad_prewarm:
        raise ValueError(f"prewarm must be an int between 0 and 64, got {prewarm!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}, got {executor!r}")


class Sandbox:
    """A reusable, thread-safe factory of isolated runs.

    Every `run()` gets a fresh guest instance from the pristine interpreter
    snapshot: nothing (globals, imported modules, random state, files) carries
    over from one run to the next. The sandbox itself only holds configuration.

    ``image`` picks the guest: ``"default"`` (CPython 3.14 and its standard
    library) or ``"scientific"`` (CPython 3.15 with numpy, pandas, scipy and
    matplotlib; installed and compiled on first use, see ``wasmrun image
    install scientific``). Both run behind the same limits, tools and results.
    ``prewarm`` is how many ready instances to keep on a background thread
    (default: 4 for the default image, 2 for scientific, whose instances come
    with numpy, pandas and matplotlib already imported).

    ``executor`` says where guests run. ``"auto"`` (default): in this process
    while no other guest runs in it, otherwise in a worker process (one per
    core, shared by all sandboxes, started in the background on first need), so
    that runs from several threads use the cores. ``"inline"``: always in this
    process (``wasmrun._workers`` explains why threads alone do not scale).
    ``"processes"``: always in a worker process. Tool handlers, policy, audit and
    ``Result.tool_calls`` stay in this process whatever the executor.

    ``deterministic=True``: the same code, inputs and ``seed`` (default 0) give byte-identical
    results (virtual clocks and seeded entropy in the host's WASI, sorted listings; see the
    README's "Determinism"). ``seed`` alone seeds only ``random`` and numpy's generator.

    >>> with Sandbox(limits=Limits(timeout_s=2)) as sandbox:
    ...     result = sandbox.run("sum(range(10))")
    >>> result.value
    '45'
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        tools: ToolRegistry | None = None,
        seed: int | None = None,
        prewarm: int | None = None,
        image: str = "default",
        executor: str = "auto",
        deterministic: bool = False,
    ) -> None:
        check_options(SandboxOptions(
            limits=limits, tools=tools, seed=seed, prewarm=prewarm, image=image, executor=executor,
            deterministic=deterministic,
        ))  # fmt: skip
        self.limits = limits or Limits()
        self.tools = tools
        self.deterministic = deterministic
        self.seed = 0 if deterministic and seed is None else seed
        self.executor = executor
        self.image = image
        self._backend: Backend[Any] = images.backend(image)
        _signals.check()  # the engine exists now: note wasmtime's fault handlers
        if prewarm is None:
            prewarm = 0 if executor == "processes" else self._backend.default_prewarm
        self._closed = False
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._pool: InstancePool[Any] | None = (
            InstancePool(self._backend, self.limits.memory_bytes, prewarm) if prewarm else None
        )
        if self._pool is not None:
            # A Sandbox dropped without close() must not keep its pool thread and warm instances alive.
            weakref.finalize(self, self._pool.close)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Refuse further runs, close its sessions and release pre-warmed instances. Runs in progress finish."""
        self._closed = True
        for session in list(self._sessions):
            session.close("its sandbox was closed")
        if self._pool is not None:
            self._pool.close()

    def run(
        self,
        code: str,
        *,
        limits: Limits | None = None,
        files: Mapping[str, bytes | str] | None = None,
    ) -> Result:
        """Run `code` in a fresh instance and return what happened. Never raises for bad code.

        `files` are input files, visible read-only in the guest's working
        directory ``/work`` (``open("sales.csv")``). Without `files` the default
        image has no filesystem at all (the scientific image always has an empty
        scratch ``/work``, for charts). The guest may also create new files in
        ``/work`` up to ``Limits.max_scratch_bytes``; those come back in
        ``Result.files``.
        """
        return self._run(code, limits, files, None)

    def _run(
        self, code: str, limits: Limits | None, files: Mapping[str, bytes | str] | None, cancel: threading.Event | None
    ) -> Result:
        """`run`, stoppable from another thread: setting `cancel` stops the guest within a few ticks (`_deadline`)."""
        inputs = check_call(code, limits, files, attempt="start a sandbox run")
        if self._closed:
            raise SandboxClosedError("this Sandbox is closed; create a new one")
        limits = limits or self.limits
        started = time.perf_counter()
        refused = self._refuse(code, limits, started)
        if refused is not None:
            return refused
        return self._run_where_configured(code, limits, started, inputs, cancel)

    def session(
        self,
        *,
        limits: Limits | None = None,
        total_fuel: int | None = None,
        lifetime_s: float = 3600.0,
        idle_timeout_s: float = 600.0,
    ) -> Session:
        """A `Session`: one interpreter that keeps globals, imports and files across its `run` calls.

        `limits` are the per-call defaults (the sandbox's by default) and
        ``limits.memory_bytes`` caps the session's memory. The session's totals:
        `total_fuel` for all calls together (default: 20 calls' worth of
        ``limits.fuel``), `lifetime_s` from creation and `idle_timeout_s` between
        calls; past any of them the session is dead (`SessionDeadError`). Close it
        (or use ``with``) to release its memory at once; closing the sandbox
        closes its sessions too.

        >>> with Sandbox() as sandbox, sandbox.session() as s:
        ...     _ = s.run("import statistics; xs = [1, 2, 3, 4]")
        ...     s.run("statistics.mean(xs)").value
        '2.5'
        """
        check_limits(limits)
        if self._closed:
            raise SandboxClosedError("this Sandbox is closed; create a new one")
        from . import _session  # imported here: it builds on this module

        limits = limits or self.limits
        fuel, lifetime, idle = check_totals(limits, total_fuel, lifetime_s, idle_timeout_s)
        session = _session.Session(
            self,
            limits,
            total_fuel=fuel,
            lifetime_s=lifetime,
            idle_timeout_s=idle,
            seed=_session.new_seed(self.seed),
        )
        self._sessions.add(session)
        return session

    def restore(self, data: bytes) -> Session:
        """A new session from `Session.snapshot()` bytes, in this process or another.

        The snapshot must come from the same wasmrun version and image (else
        `SnapshotError`). The restored session gets a new id and lifetime, and
        later calls use this sandbox's tools; tool calls of the restored history
        are never made again (their recorded results are used).
        """
        if self._closed:
            raise SandboxClosedError("this Sandbox is closed; create a new one")
        from . import _session

        session = _session.restore(self, data)
        self._sessions.add(session)
        return session

    def _run_where_configured(
        self, code: str, limits: Limits, started: float, inputs: dict[str, bytes] | None, cancel: threading.Event | None
    ) -> Result:
        """Run here or in a worker process, as ``executor`` says (see the class docstring)."""
        claimed = self.executor == "auto" and _workers.inline_runs.claim_if_idle()
        if not claimed and self.executor != "inline":
            pool = _workers.shared_pool()
            worker = pool.take_waiting(_workers.START_TIMEOUT_S) if self.executor == "processes" else pool.take()
            if worker is not None:
                return _workers.execute(
                    pool, worker, image=self.image, seed=self.seed, tools=self.tools, code=code, limits=limits,
                    inputs=inputs, started=started, deterministic=self.deterministic, cancel=cancel,
                )  # fmt: skip
            if self.executor == "processes":
                message = f"no worker process could be started: {pool.start_error}"
                return failed_run(code, "internal", "WorkerError", message, started)
            # "auto" with every worker busy or still starting: run here meanwhile.
        if not claimed:
            _workers.inline_runs.claim()
        try:
            return self._execute(code, limits, started, inputs, cancel)
        finally:
            _workers.inline_runs.release()

    def _refuse(self, code: str, limits: Limits, started: float) -> Result | None:
        """The result for code that cannot be run at all (not Unicode, too long), or None."""
        try:
            size = len(code.encode("utf-8"))
        except UnicodeEncodeError as exc:
            reason = f"code is not valid Unicode text: {exc.reason} at position {exc.start}"
            return failed_run(code, "syntax", "UnicodeEncodeError", reason, started)
        if size > limits.max_code_bytes:
            reason = f"code is {size:,} bytes; the limit is {limits.max_code_bytes:,} (Limits.max_code_bytes)"
            return failed_run(code, "syntax", "ValueError", reason, started)
        return None

    def _request(self, code: str, limits: Limits, cwd: str | None, *, seed: int | None, session_call: int) -> str:
        """The run request every image's guest shim reads (see python-wasm/guest/wasmrun_core.py)."""
        return json.dumps(
            {
                "code": code,
                "recursion_limit": limits.recursion_limit,
                "max_value_chars": limits.max_value_chars,
                "seed": seed,
                # Seeds `random` when `seed` is None: drawn here, it spares the guest ~10 host calls for the
                # 2.5 KB of entropy `random.seed(None)` reads (a `random` instance is not a secret).
                "entropy": secrets.randbits(128),
                "deterministic": self.deterministic,
                "tools": self.tools.guest_specs() if self.tools is not None else [],
                "cwd": cwd,
                # >= 1: the instance serves one session and keeps its globals between calls.
                "session_call": session_call,
            }
        )

    def _execute(
        self, code: str, limits: Limits, started: float, inputs: dict[str, bytes] | None, cancel: threading.Event | None
    ) -> Result:
        backend = self._backend
        with _sigint.deferred():  # making the instance runs guest code too; Ctrl-C is raised once it is released
            try:
                instance = self._fresh_instance(limits.memory_bytes, code)
            except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
                return failed_run(
                    code,
                    "memory",
                    "MemoryError",
                    f"could not start the interpreter within Limits.memory_bytes: {exc}",
                    started,
                )
            pool = self._pool if self._pool is not None and self._pool.memory_bytes == limits.memory_bytes else None
            try:
                outcome = self._call(instance, code, limits, started, inputs, cancel=cancel)
            finally:
                if pool is not None:
                    pool.discard(instance)
                else:
                    backend.close(instance)
            if outcome.interrupted:
                raise KeyboardInterrupt
            return outcome.result

    def _fresh_instance(self, memory_bytes: int, code: str) -> Any:
        """A pristine instance for `code`: a pre-warmed one when the pool has the right memory cap.

        A deterministic run always starts from a ready instance's state (made now if none is ready).
        """
        pool = self._pool if self._pool is not None and self._pool.memory_bytes == memory_bytes else None
        warm = self.deterministic
        return pool.take(code, warm=warm) if pool is not None else self._backend.fresh(memory_bytes, code, warm=warm)

    def _call(
        self,
        instance: Any,
        code: str,
        limits: Limits,
        started: float,
        inputs: dict[str, bytes] | None,
        *,
        session: SessionTurn | None = None,
        cancel: threading.Event | None = None,
    ) -> CallOutcome:
        """Run `code` in `instance` (one-shot, or one call of a session) and assemble its `Result`."""
        backend = self._backend
        # `timeout_s` bounds the whole call as the caller sees it, from `started`: getting an instance counts too.
        state = RunState(
            deadline_ns=time.monotonic_ns() + int((limits.timeout_s - (time.perf_counter() - started)) * 1e9),
            max_output_bytes=limits.max_output_bytes,
            max_artifact_bytes=limits.max_scratch_bytes,
            cancel=cancel or threading.Event(),
        )
        if self.deterministic:
            virtual = session.virtual if session is not None else None
            state.virtual = virtual if virtual is not None else VirtualEnvironment(self.seed or 0)
        context = RunContext(code=code)
        if session is not None and session.dispatch is not None:
            hook = session.dispatch

            def dispatch(run: RunState, name: str, args: str) -> tuple[bool, str]:
                return hook(context, run, name, args)

            state.tool_dispatch = dispatch
        elif self.tools is not None:
            registry = self.tools

            def dispatch(run: RunState, name: str, args: str) -> tuple[bool, str]:
                return registry.dispatch(context, run, name, args)

            state.tool_dispatch = dispatch
        trap: GuestTrap | None = None
        raw: str | None = None
        cwd = backend.prepare(instance, state, inputs, limits)
        request = self._request(
            code,
            limits,
            cwd,
            seed=self.seed if session is None else session.seed,
            session_call=0 if session is None else session.call,
        )
        store = instance.store
        store.set_fuel(limits.fuel)
        _deadline.arm(store, limits.timeout_s, backend.ticker.ticks_for)
        _signals.check()  # a library may have replaced wasmtime's fault handlers since
        enter_run(state)
        try:
            with _deadline.ticking(backend.ticker, state.deadline_ns), _sigint.stopping(state):
                raw = backend.call(instance, request)
        except GuestTrap as exc:
            trap = exc
        finally:
            leave_run()
        fuel_left = store.get_fuel()
        files = backend.files(instance, state)
        memory_size = backend.memory_size(instance)

        fuel_used = limits.fuel - fuel_left
        stats = RunStats(
            duration_s=time.perf_counter() - started,
            fuel_used=fuel_used,
            memory_bytes=memory_size,
            tool_calls=state.tool_calls,
            session_id=None if session is None else session.id,
            session_call=None if session is None else session.call,
        )
        value, error, exit_code = self._outcome(state, raw, trap, fuel_left, limits)
        result = Result(
            code=code,
            stdout=state.stdout.decode("utf-8", "replace"),
            stderr=state.stderr.decode("utf-8", "replace"),
            value=value,
            error=error,
            stats=stats,
            exit_code=exit_code,
            files=files,
            tool_calls=tuple(context.records),
            artifacts=dict(state.artifacts),
        )
        return CallOutcome(result, trapped=trap is not None or raw is None, interrupted=state.interrupted)

    @staticmethod
    def _outcome(
        state: RunState, raw: str | None, trap: GuestTrap | None, fuel_left: int, limits: Limits
    ) -> tuple[str | None, RunError | None, int | None]:
        """(value, error, exit_code) of a finished run, from the guest's outcome or the trap."""
        if trap is not None or raw is None:
            if state.exit_code is not None and not state.output_exceeded:
                # os._exit(n): the interpreter stopped at once; status 0 is a success.
                if state.exit_code == 0:
                    return None, None, 0
                message = f"the guest exited with status {state.exit_code}"
                return None, RunError(kind="exception", type="SystemExit", message=message), state.exit_code
            stderr = state.stderr.decode("utf-8", "replace")
            return None, classify_trap(state, fuel_left, limits, str(trap), stderr), None
        try:
            outcome = GUEST_OUTCOME.decode(raw)
        except msgspec.DecodeError as exc:
            message = f"guest sent a malformed outcome: {exc}"
            return None, RunError(kind="internal", type="ProtocolError", message=message), None
        # The guest hands back the unflushed tail of its output with the outcome.
        try:
            state.write_output(1, outcome.stdout.encode("utf-8", "surrogateescape"))
            state.write_output(2, outcome.stderr.encode("utf-8", "surrogateescape"))
        except Trap:
            pass
        if state.output_exceeded:
            return outcome.value, classify_trap(state, fuel_left, limits, "", ""), outcome.exit_code
        guest = outcome.error
        error = None
        if guest is not None:
            error = RunError(
                kind=guest.kind, type=guest.type, message=guest.message, traceback=guest.traceback, lineno=guest.lineno
            )
        return outcome.value, error, outcome.exit_code


def run(
    code: str, *, limits: Limits | None = None, tools: ToolRegistry | None = None, image: str = "default"
) -> Result:
    """Run `code` once in a fresh sandbox: `Sandbox(limits=..., tools=..., image=...).run(code)`."""
    with Sandbox(limits=limits, tools=tools, image=image, prewarm=0) as sandbox:
        return sandbox.run(code)
