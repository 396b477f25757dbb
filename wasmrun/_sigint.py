"""Ctrl-C while the main thread is inside wasm: noted by a flag, raised only once the wasm call returned.

Python runs a signal's handler on the main thread at the next bytecode
boundary. While the main thread is inside a wasm call, the next bytecodes are
those of a host callback: a host function (wasmtime-py's ``trampoline``,
wasmrun's ``_fastcall`` callbacks) or the epoch-deadline callback
(`wasmrun._deadline`). Python's default handler raises `KeyboardInterrupt`
there, at the callback's first line, before any ``try`` in it can catch it.
ctypes then prints "Exception ignored on calling ctypes callback function",
drops the interrupt and hands wasmtime whatever was in the return slot: as a
trap pointer (a crash when it is not 0) or as a success whose results were
never written (the guest reads garbage). Any Ctrl-C that lands while the guest
runs wasm under the default handler and is followed by a host call does this:
a scientific instance loading its shim (`_trusted_turn`) or compiling it
ran before the run's own handler was installed (the likely cause of the
abort seen once in ``test_ctrl_c_during_a_tool_call[scientific]``).

Second: wasmtime-py frees a store, then clears its pointer. An interrupt in
between left the pointer set and ``__del__`` freed it again, a segfault
(`close`; a one-shot run closed its instance after restoring the handler).

So every stretch of work that enters wasm, or frees a store, on the main
thread (making and warming an instance, the run, a session's re-execution,
an image's first load) runs inside `deferred`: while it lasts, SIGINT's
handler only sets a flag, which is safe anywhere, and marks the run attached
with `stopping` as interrupted (its guest then stops at the next epoch tick or
host call, `RunState.check_deadline`). Trusted start-up work is never stopped
half-way; it is short. `KeyboardInterrupt` is raised when the outermost
`deferred` block ends (or earlier by the caller, after cleaning up), never
inside a callback.

Only Python's default handler is replaced, and only on the main thread (the
only one signal handlers run on). An application's own SIGINT handler is left
alone: if it raises inside a callback, that is the crash described above.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._runstate import RunState


class _Deferred:
    """The SIGINT handler inside `deferred`: it takes note and interrupts the attached run, nothing else.

    No lock, no exception, no allocation worth mentioning: it may run inside
    any host callback, at any bytecode of it.
    """

    def __init__(self) -> None:
        self.pending = False
        self.run: RunState | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.pending = True
        run = self.run
        if run is not None:
            run.interrupted = True


def _active() -> _Deferred | None:
    handler = signal.getsignal(signal.SIGINT)
    return handler if isinstance(handler, _Deferred) else None


@contextlib.contextmanager
def _deferring(*, raise_at_end: bool) -> Iterator[_Deferred | None]:
    """The active `_Deferred` (installed now if the default handler is in place on the main thread), or None."""
    active = _active()
    if active is not None:  # nested: the outermost block restores the handler and raises
        yield active
        return
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield None
        return
    deferred = _Deferred()
    signal.signal(signal.SIGINT, deferred)
    try:
        yield deferred
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if deferred.pending and raise_at_end:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """While the body runs on the main thread, Ctrl-C is only noted; `KeyboardInterrupt` is raised at the end.

    Nothing is raised at the end when the body raised (its exception wins,
    e.g. the caller's own `KeyboardInterrupt` after cleaning up). Nested
    blocks do nothing: the outermost one decides.
    """
    with _deferring(raise_at_end=True):
        yield


@contextlib.contextmanager
def stopping(run: RunState) -> Iterator[None]:
    """While the body runs, Ctrl-C marks `run` interrupted, also one noted earlier in the enclosing `deferred`.

    Raises nothing itself: the caller reads ``run.interrupted`` and raises
    `KeyboardInterrupt` after cleaning up (see `Sandbox.run`).
    """
    with _deferring(raise_at_end=False) as active:
        if active is None:
            yield
            return
        previous, active.run = active.run, run
        if active.pending:
            run.interrupted = True
        try:
            yield
        finally:
            active.run = previous


def close(resource: Any) -> None:
    """``resource.close()`` for a wasmtime object (a store), with Ctrl-C deferred until it returned.

    wasmtime-py frees the C object, then clears its pointer. A `KeyboardInterrupt`
    raised between the two (Ctrl-C while a store's memory is being unmapped) left
    the pointer set, and the object's ``__del__`` freed it again: a segfault, seen
    with the default image when Ctrl-C came as a run's instance was being closed.
    """
    with deferred():
        resource.close()
