"""`Sandbox`: run untrusted Python in a fresh, limited CPython-on-WASI instance."""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import wasmtime

from . import images
from ._errors import ReentrancyError, SandboxClosedError
from ._limits import Limits
from ._result import GUEST_OUTCOME, Result, RunError, RunStats
from ._runstate import RunState, Trap, current_run, enter_run, leave_run
from .images import Backend, GuestTrap, InstancePool
from .tools import RunContext, ToolRegistry, in_tool_handler

ToolDispatch = Callable[[RunState, str, str], Any]


def _failure(code: str, kind: Any, type_: str, message: str, started: float, fuel: int = 0) -> Result:
    return Result(
        code=code,
        stdout="",
        stderr="",
        value=None,
        error=RunError(kind=kind, type=type_, message=message),
        stats=RunStats(duration_s=time.perf_counter() - started, fuel_used=fuel, memory_bytes=None),
    )


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
    ) -> None:
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits must be a wasmrun.Limits, got {type(limits).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        if tools is not None and not isinstance(tools, ToolRegistry):
            raise TypeError(f"tools must be a wasmrun.ToolRegistry, got {type(tools).__name__}")
        if not isinstance(image, str):
            raise TypeError(f"image must be a str, got {type(image).__name__}")
        if image not in images.IMAGES:
            raise ValueError(f"unknown image {image!r}; available: {', '.join(map(repr, images.IMAGES))}")
        self.limits = limits or Limits()
        self.tools = tools
        self.seed = seed
        bad_prewarm = isinstance(prewarm, bool) or not isinstance(prewarm, int) or not 0 <= prewarm <= 64
        if prewarm is not None and bad_prewarm:
            raise ValueError(f"prewarm must be an int between 0 and 64, got {prewarm!r}")
        self.image = image
        self._backend: Backend[Any] = images.backend(image)
        if prewarm is None:
            prewarm = self._backend.default_prewarm
        self._closed = False
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
        """Refuse further runs and release pre-warmed instances. Runs in progress finish normally."""
        self._closed = True
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
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits must be a wasmrun.Limits, got {type(limits).__name__}")
        if self._closed:
            raise SandboxClosedError("this Sandbox is closed; create a new one")
        if current_run(required=False) is not None or in_tool_handler():
            raise ReentrancyError(
                "a tool handler tried to start a sandbox run from inside a run on the same thread; "
                "re-entrant runs are refused"
            )
        limits = limits or self.limits
        inputs = _check_files(files)
        started = time.perf_counter()

        try:
            size = len(code.encode("utf-8"))
        except UnicodeEncodeError as exc:
            return _failure(
                code,
                "syntax",
                "UnicodeEncodeError",
                f"code is not valid Unicode text: {exc.reason} at position {exc.start}",
                started,
            )
        if size > limits.max_code_bytes:
            return _failure(
                code,
                "syntax",
                "ValueError",
                f"code is {size:,} bytes; the limit is {limits.max_code_bytes:,} (Limits.max_code_bytes)",
                started,
            )

        return self._execute(code, limits, started, inputs)

    def _request(self, code: str, limits: Limits, cwd: str | None) -> str:
        """The run request every image's guest shim reads (see python-wasm/guest/wasmrun_core.py)."""
        return json.dumps(
            {
                "code": code,
                "recursion_limit": limits.recursion_limit,
                "max_value_chars": limits.max_value_chars,
                "seed": self.seed,
                "tools": self.tools.guest_specs() if self.tools is not None else [],
                "cwd": cwd,
            }
        )

    def _execute(self, code: str, limits: Limits, started: float, inputs: dict[str, bytes] | None) -> Result:
        backend = self._backend
        state = RunState(
            deadline_ns=time.monotonic_ns() + int(limits.timeout_s * 1e9),
            max_output_bytes=limits.max_output_bytes,
            max_artifact_bytes=limits.max_scratch_bytes,
        )
        context = RunContext(code=code)
        if self.tools is not None:
            registry = self.tools

            def dispatch(run: RunState, name: str, args: str) -> tuple[bool, str]:
                return registry.dispatch(context, run, name, args)

            state.tool_dispatch = dispatch
        pool = self._pool if self._pool is not None and self._pool.memory_bytes == limits.memory_bytes else None
        try:
            instance = pool.take(code) if pool is not None else backend.fallback(limits.memory_bytes, code)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            return _failure(
                code,
                "memory",
                "MemoryError",
                f"could not start the interpreter within Limits.memory_bytes: {exc}",
                started,
            )
        trap: GuestTrap | None = None
        raw: str | None = None
        try:
            request = self._request(code, limits, backend.prepare(instance, state, inputs, limits))
            store = instance.store
            store.set_fuel(limits.fuel)
            store.set_epoch_deadline(backend.ticker.ticks_for(limits.timeout_s))
            enter_run(state)
            try:
                with backend.ticker:
                    raw = backend.call(instance, request)
            except GuestTrap as exc:
                trap = exc
            finally:
                leave_run()
            fuel_left = store.get_fuel()
            files = backend.files(instance, state)
            memory_size = backend.memory_size(instance)
        finally:
            if pool is not None:
                pool.discard(instance)
            else:
                backend.close(instance)

        fuel_used = limits.fuel - fuel_left
        stats = RunStats(
            duration_s=time.perf_counter() - started,
            fuel_used=fuel_used,
            memory_bytes=memory_size,
            tool_calls=state.tool_calls,
        )
        value, error, exit_code = self._outcome(state, raw, trap, fuel_left, limits)
        return Result(
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
            return None, _classify_trap(state, fuel_left, limits, str(trap), stderr), None
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
            return outcome.value, _classify_trap(state, fuel_left, limits, "", ""), outcome.exit_code
        guest = outcome.error
        error = None
        if guest is not None:
            error = RunError(
                kind=guest.kind, type=guest.type, message=guest.message, traceback=guest.traceback, lineno=guest.lineno
            )
        return outcome.value, error, outcome.exit_code


def _check_files(files: Mapping[str, bytes | str] | None) -> dict[str, bytes] | None:
    if files is None:
        return None
    if not isinstance(files, Mapping):
        raise TypeError(f"files must be a mapping of name to bytes, got {type(files).__name__}")
    checked: dict[str, bytes] = {}
    for name, data in files.items():
        if not isinstance(name, str) or not name or name.startswith("/") or "\0" in name:
            raise ValueError(f"file name {name!r} must be a non-empty relative path")
        if any(part in ("", ".", "..") for part in name.split("/")):
            raise ValueError(f"file name {name!r} must not contain empty, '.' or '..' parts")
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"file {name!r} must be bytes or str, got {type(data).__name__}")
        checked[name] = bytes(data)
    return checked


def _classify_trap(state: RunState, fuel_left: int, limits: Limits, trap: str, stderr: str) -> RunError:
    """Name the reason a guest trapped, from this run's own bookkeeping (component traps carry no code)."""
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
    return RunError(kind="internal", type="GuestCrash", message="the guest crashed (wasm trap)", traceback=trap)


def run(
    code: str, *, limits: Limits | None = None, tools: ToolRegistry | None = None, image: str = "default"
) -> Result:
    """Run `code` once in a fresh sandbox: `Sandbox(limits=..., tools=..., image=...).run(code)`."""
    with Sandbox(limits=limits, tools=tools, image=image, prewarm=0) as sandbox:
        return sandbox.run(code)
