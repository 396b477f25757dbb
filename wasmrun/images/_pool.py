"""Pristine guest instances prepared ahead of time, off the caller's hot path, for any image.

Instantiating a guest, warming it and closing a used store all cost time that
a run should not pay. A `Sandbox` keeps a few instances ready on a background
thread, each made by its image's `Backend.prewarmed`: a fresh instance warmed
with trusted code only (the default image runs its shim on the no-op program
``pass`` so that the pages every run touches are already private; the
scientific image comes with numpy, pandas and matplotlib imported). When no
instance is ready, `Backend.fallback` makes one on the spot. Used instances
are closed on a second thread, so a run only pays for its own work: the first
thread may be busy for seconds (the scientific image's first warm instance
imports numpy, pandas and matplotlib), and a run must not close its own
instance meanwhile (closing a scientific store took 25-55 ms on a loaded
machine, all of it added to a timed-out run's overshoot).

A warm-up is not free: for the default image it costs about as much CPU as the
run it speeds up. Back to back runs would then pay twice (measured: 5.1 ms per
run with 4 warmed instances vs 2.7 ms without a pool). So for an image whose
`Backend.warm_up_pays_when_busy` is False the pool refills with *cold*
instances (instantiation is cheap and touches no snapshot pages) and warms them
only after the caller has been idle for `IDLE_S`; a pool then never costs
throughput, and still cuts the latency of a run that follows a pause.

Every instance serves exactly one user run. The warm-up runs none of the
user's code and the guest shim resets everything a run may see (stdout/stderr,
random seed, recursion limit, `tools`, working directory) at the start of each
run, so pre-warming changes latency, never isolation.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Generic

import wasmtime

from .. import _shutdown
from ._backend import Backend, GuestTrap, I

#: How long the caller must have left the pool alone before cold instances are warmed.
IDLE_S = 0.01
_MAX_PENDING = 4  # used instances waiting for the pool thread; past this the caller closes its own


class InstancePool(Generic[I]):
    """Keeps up to `size` ready instances of one backend for one memory cap; disposes of used ones in the background."""

    def __init__(self, backend: Backend[I], memory_bytes: int, size: int) -> None:
        self._backend = backend
        self.memory_bytes = memory_bytes
        self._size = size
        self._ready: collections.deque[I] = collections.deque()
        self._cold: collections.deque[I] = collections.deque()  # made, not warmed yet (see the module docstring)
        self._last_active = 0.0  # when a run last took or handed back an instance
        self._in_use = 0  # instances taken and not handed back: a run is going on
        self._counting = threading.Lock()
        self._used: collections.deque[I] = collections.deque()
        self._wake = threading.Event()
        self._used_wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="wasmrun-prewarm", daemon=True)
        self._thread.start()
        self._closer = threading.Thread(target=self._close_loop, name="wasmrun-pool-close", daemon=True)
        self._closer.start()
        _shutdown.register(self)

    def take(self, code: str, *, warm: bool = False) -> I:
        """A fresh instance for `code`: a ready one if any, else one made now (`Backend.fresh`).

        `warm`: only a warmed instance will do (a deterministic run must not see whether the pool had one).
        """
        self._last_active = time.monotonic()
        item: I | None = None
        for queue in (self._ready,) if warm else (self._ready, self._cold):
            try:
                item = queue.popleft()
                break
            except IndexError:
                continue
        if item is None:
            item = self._backend.fresh(self.memory_bytes, code, warm=warm)
        with self._counting:
            self._in_use += 1
        self._wake.set()
        return item

    def discard(self, instance: I) -> None:
        """Hand a used instance over to be disposed of off the hot path (by the closing thread).

        When that thread is behind, the caller disposes of the instance itself:
        runs faster than it would otherwise leave one whole guest (~7-60 MiB of
        host memory each) waiting per run, without bound.
        """
        with self._counting:
            self._in_use -= 1
        self._last_active = time.monotonic()
        if self._closed or len(self._used) >= _MAX_PENDING:
            self._backend.close(instance)
            return
        self._used.append(instance)
        self._used_wake.set()
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._used_wake.set()

    def stop(self, timeout: float) -> None:
        """Close, and wait for the thread to dispose of its instances (at interpreter exit)."""
        self.close()
        for thread in (self._thread, self._closer):
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _close_loop(self) -> None:
        backend = self._backend
        while True:
            while self._used:
                backend.close(self._used.popleft())
            if self._closed:
                return
            self._used_wake.wait()
            self._used_wake.clear()

    def _loop(self) -> None:
        backend = self._backend
        while True:
            if self._closed:
                for queue in (self._ready, self._cold):
                    while queue:
                        backend.close(queue.popleft())
                return
            warm_now = backend.warm_up_pays_when_busy
            if len(self._ready) + len(self._cold) < self._size:
                try:
                    instance = (backend.prewarmed if warm_now else backend.instantiate)(self.memory_bytes)
                except (wasmtime.WasmtimeError, wasmtime.Trap, GuestTrap):
                    # e.g. the memory cap leaves no room: runs start cold (and report it if they cannot start)
                    self._size = 0
                    continue
                if self._closed:
                    backend.close(instance)
                    continue
                (self._ready if warm_now else self._cold).append(instance)
                continue
            idle_for = -1.0 if self._in_use else time.monotonic() - self._last_active
            if self._cold and idle_for >= IDLE_S:
                try:
                    instance = self._cold.popleft()
                except IndexError:  # taken meanwhile
                    continue
                try:
                    backend.warm(instance)  # closes the instance if it fails
                except (wasmtime.WasmtimeError, wasmtime.Trap, GuestTrap):
                    self._size = 0  # as above: runs start cold
                    continue
                self._ready.append(instance)
                continue
            # With cold instances and no run going on, look again when the caller may count as idle
            # (a run handing its instance back wakes us too).
            self._wake.wait(max(0.001, IDLE_S - idle_for) if self._cold and not self._in_use else None)
            self._wake.clear()
