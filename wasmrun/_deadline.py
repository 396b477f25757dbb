"""Stopping a running guest on time: the wall-clock deadline and Ctrl-C.

Epoch interruption makes compiled wasm check, at every function entry and loop
back-edge, whether the engine's epoch has reached the store's deadline. Counting
ticks of a fixed period is not enough for a wall-clock deadline: on a loaded
machine the ticker thread wakes late, and 300 ticks of "5 ms" took 2.0 s instead
of 1.5 s. So a run's store is armed with a deadline of one tick and an
*epoch-deadline callback*: wasmtime calls it at every epoch increment, on the
thread running the guest, and the callback compares the clock with the run's own
deadline (`RunState.deadline_ns`), looks at the run's cancel and Ctrl-C flags,
and either lets the guest run to the next increment or stops it with a trap.
The `EpochTicker` schedules the increments on the clock: every `CHECK_S` (the
check takes the GIL, so it stays rare) and once exactly at each run's deadline
(`ticking`), so a deadline holds to within one late wake-up of a host thread,
however slow the ticker was before.

Ctrl-C: while a run executes on the main thread, SIGINT's handler only marks
the run as interrupted (`wasmrun._sigint`: a `KeyboardInterrupt` raised inside a
host callback would be swallowed by ctypes, or crash the process); the next
tick's callback stops the guest, and `Sandbox.run` raises `KeyboardInterrupt`
to its caller once the instance is released.

This uses wasmtime-py's ctypes bindings (``wasmtime._ffi``), which are not
public API; when they do not look as expected, `arm` falls back to counting
ticks (deadlines then drift with the ticker, and Ctrl-C waits for the deadline).
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from typing import Any

import wasmtime

from ._runstate import RunState, current_run
from .images import EpochTicker

try:  # pragma: no cover - exercised implicitly on import
    from wasmtime import _bindings
    from wasmtime import _ffi as ffi

    # The exact ctypes types the binding declares (ctypes accepts no look-alike function-pointer type).
    _CALLBACK_T = _bindings._wasmtime_store_epoch_deadline_callback.argtypes[1]
    _FINALIZER_T = _bindings._wasmtime_store_epoch_deadline_callback.argtypes[3]
    _AVAILABLE = all(hasattr(ffi, name) for name in ("wasmtime_store_epoch_deadline_callback", "wasmtime_error_new"))
except (ImportError, AttributeError, IndexError):  # pragma: no cover
    _AVAILABLE = False

_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE


def _stop(why: str) -> int:
    """A wasmtime error that makes the guest trap, as the callback's return value."""
    error = ffi.wasmtime_error_new(f"wasmrun: {why} (epoch deadline)".encode())
    return ctypes.cast(error, ctypes.c_void_p).value or 0


def _on_epoch(context: Any, data: Any, delta: Any, kind: Any) -> int:
    try:
        run: RunState | None = current_run(required=False)
        if run is not None:
            if run.interrupted:
                return _stop("interrupted (KeyboardInterrupt)")
            if run.cancel.is_set():  # the caller stopped the run (an AsyncSandbox task was cancelled)
                run.cancelled = True
                return _stop("run cancelled")
            if run.deadline_ns <= time.monotonic_ns():
                run.timed_out = True
                return _stop("deadline exceeded")
        # Check again at the next increment: the ticker decides when (`EpochTicker.running`).
        delta[0] = 1
        kind[0] = _CONTINUE
        return 0
    except KeyboardInterrupt:  # an application's own SIGINT handler raised while this callback ran
        run = current_run(required=False)
        if run is None:
            return 0
        run.interrupted = True
        return _stop("interrupted (KeyboardInterrupt)")


_CALLBACK = _CALLBACK_T(_on_epoch) if _AVAILABLE else None
_NO_FINALIZER = _FINALIZER_T() if _AVAILABLE else None


def arm(store: wasmtime.Store, timeout_s: float, ticks_for: Any) -> None:
    """Make `store` stop at its run's wall-clock deadline, checked every tick; or count ticks if unavailable."""
    if _CALLBACK is None:
        store.set_epoch_deadline(ticks_for(timeout_s))
        return
    ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _CALLBACK, None, _NO_FINALIZER)
    store.set_epoch_deadline(1)


def ticking(ticker: EpochTicker, deadline_ns: int) -> contextlib.AbstractContextManager[None]:
    """While a run armed by `arm` executes: `ticker` advancing at its deadline too, or every tick if counted."""
    return ticker.running(deadline_ns) if _CALLBACK is not None else ticker
