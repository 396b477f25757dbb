"""Keeping wasmtime's fault handlers installed while other libraries in the process replace them.

wasmtime turns a guest's faults into traps with process-wide signal handlers
(SIGSEGV for out-of-bounds memory and stack overflow, SIGILL for ``unreachable``,
SIGFPE for division by zero), installed when the first engine is created; for a
fault that is not the guest's, they chain to the handler that was there before.
A library that installs its own handlers afterwards without chaining (Ray's
``ray.init`` installs crash handlers; ``signal.signal(SIGILL, ...)`` does too)
turns the next guest trap into a crash, or a hang: the replaced handler returns
and the faulting instruction runs again, forever.

`check` runs before every guest call: it compares the current handlers with
the ones wasmtime installed (one ``sigaction`` read per signal, ~1 us) and, if
they were replaced, puts wasmtime's back and warns once. Faults outside the
guest then reach whatever handler was installed *before* wasmtime, not the one
that replaced it. Linux only (the layout of ``struct sigaction`` is the
platform's); elsewhere `check` does nothing.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
import warnings

_SIGNALS = (signal.SIGSEGV, signal.SIGILL, signal.SIGFPE)


class _SigAction(ctypes.Structure):
    """glibc's ``struct sigaction`` on Linux (handler, 1024-bit mask, flags, restorer)."""

    _fields_ = (
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ubyte * 128),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    )


_lock = threading.Lock()
_saved: dict[int, _SigAction] | None = None
_warned = False
_libc: ctypes.CDLL | None = None
if sys.platform == "linux":  # pragma: no branch
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        _libc = None


def _current(libc: ctypes.CDLL, signum: int) -> _SigAction | None:
    action = _SigAction()
    return action if libc.sigaction(signum, None, ctypes.byref(action)) == 0 else None


def check() -> None:
    """Record wasmtime's handlers (first call, after an engine exists), or restore them if replaced since."""
    global _saved, _warned
    libc = _libc
    if libc is None:
        return
    saved = _saved
    if saved is None:
        with _lock:
            if _saved is None:
                found = {s: _current(libc, s) for s in _SIGNALS}
                _saved = {s: a for s, a in found.items() if a is not None and a.handler}
            return
    replaced = []
    for signum, action in saved.items():
        now = _current(libc, signum)
        if now is not None and now.handler != action.handler:
            libc.sigaction(signum, ctypes.byref(action), None)
            replaced.append(signal.Signals(signum).name)
    if replaced and not _warned:
        _warned = True
        warnings.warn(
            f"another library replaced wasmtime's handlers for {', '.join(replaced)} (e.g. ray.init's crash "
            "handlers); wasmrun restored them, because a guest trap would otherwise crash or hang this process. "
            "Faults outside the guest now reach the handlers that were installed before wasmtime.",
            RuntimeWarning,
            stacklevel=3,
        )
