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

Work in the background is not free either. On two cores, making or closing
an instance while a run executes slows that run down (the address space is
shared, so every mapping change and copy-on-write fault on one core interrupts
the other) and the scientific image's warm copy takes CPU the caller wanted;
measured back to back, a pool that refilled at once made fresh `print(1)` runs
of the default image ~30% slower than `prewarm=0`. So the pool works only
while it pays:

* While runs come back to back (one is going on, or one ended less than
  `QUIET_S` ago) the pool makes nothing and closes nothing; runs take a
  ready instance if there is one and otherwise make their own
  (`Backend.fallback`), and close their instance themselves once
  `_MAX_PENDING` used ones wait. It refills then only if a warm instance saves
  recent runs more than it costs (`Backend.warm_up_pays_for`: a scientific run
  that imports numpy or pandas, 30 ms vs 6 ms with a ready one; never the
  default image, whose warm-up costs as much as it saves).
* Once the caller is quiet, the pool closes used instances and refills: the
  default image with *cold* instances (instantiation is cheap and touches no
  snapshot pages), warmed only after the caller has been idle for `IDLE_S`.

So back-to-back runs cost what they cost with ``prewarm=0`` (within noise), and
a run after a pause finds a warmed instance.

Every instance serves exactly one user run. The warm-up runs none of the
user's code and the guest shim resets everything a run may see (stdout/stderr,
random seed, recursion limit, `tools`, working directory) at the start of each
run, so pre-warming changes latency, never isolation.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Generic

import wasmtime

from .. import _shutdown
from ._backend import Backend, GuestTrap, I

#: How long after the last run the caller counts as quiet, so that background work no longer competes with runs.
QUIET_S = 0.002
#: How long the caller must have left the pool alone before cold instances are warmed.
IDLE_S = 0.01
_RECENT = 8  # takes remembered for `Backend.warm_up_pays_for`
_MAX_PENDING = 4  # used instances waiting for the pool thread; past this the caller closes its own


class _Alarm:
    """What a pool thread sleeps on: `ring` wakes it only while it is parked (asleep with no timeout).

    Awake threads re-check the pool's state at least every `QUIET_S`, so runs that
    come back to back wake nobody: each wake-up crosses to the other core.
    """

    __slots__ = ("_event", "_parked")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._parked = False

    def ring(self, *, always: bool = False) -> None:
        if always or self._parked:
            self._event.set()

    def sleep(self, timeout: float | None, has_work: Callable[[], bool]) -> None:
        """Sleep up to `timeout` seconds, or until rung when None (`has_work` is checked once parked: no lost ring)."""
        if timeout is None:
            self._parked = True
            if has_work():
                self._parked = False
                return
        self._event.wait(timeout)
        self._event.clear()
        self._parked = False


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
        self._wake = _Alarm()  # the pool thread's
        self._used_wake = _Alarm()  # the closing thread's
        self._paid = collections.deque([False] * _RECENT, maxlen=_RECENT)  # a refill beside each last take paid
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
        with self._counting:
            self._in_use += 1  # before making an instance, which is part of the run (the pool must not compete)
        self._last_active = time.monotonic()
        backend = self._backend
        pays = backend.warm_up_pays_when_busy and (warm or backend.warm_up_pays_for(code))
        self._paid.append(pays)
        if pays:
            self._wake.ring(always=True)  # refill now: the pool thread does not wait for the caller to be quiet
        for queue in (self._ready,) if warm else (self._ready, self._cold):
            try:
                item = queue.popleft()
            except IndexError:
                continue
            self._wake.ring()
            return item
        try:
            return backend.fresh(self.memory_bytes, code, warm=warm)
        except BaseException:
            self._release()
            raise

    def discard(self, instance: I) -> None:
        """Hand a used instance over to be disposed of off the hot path (by the closing thread).

        When that thread is behind, the caller disposes of the instance itself:
        runs faster than it would otherwise leave one whole guest (~7-60 MiB of
        host memory each) waiting per run, without bound.
        """
        self._release()
        if self._closed or len(self._used) >= _MAX_PENDING:
            self._backend.close(instance)
            return
        self._used.append(instance)
        self._used_wake.ring()

    def _release(self) -> None:
        """A run's instance is no longer in use (handed back, or never made)."""
        with self._counting:
            self._in_use -= 1
        self._last_active = time.monotonic()

    def close(self) -> None:
        self._closed = True
        self._wake.ring(always=True)
        self._used_wake.ring(always=True)

    def stop(self, timeout: float) -> None:
        """Close, and wait for the thread to dispose of its instances (at interpreter exit)."""
        self.close()
        for thread in (self._thread, self._closer):
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _until_quiet(self) -> float | None:
        """0.0 when the caller is quiet (module docstring); else how long until it may be (None: a run is on)."""
        if self._in_use:
            return None
        return max(0.0, QUIET_S - (time.monotonic() - self._last_active))

    def _close_loop(self) -> None:
        backend = self._backend
        while True:
            wait: float | None = None
            while self._used and not self._closed:
                wait = self._until_quiet()
                if wait != 0.0:
                    break
                backend.close(self._used.popleft())
            if self._closed:
                while self._used:
                    backend.close(self._used.popleft())
                return
            if not self._used:
                wait = None
            elif wait is None:
                wait = QUIET_S  # a run is going on: look again soon (discard does not ring while we are awake)
            self._used_wake.sleep(wait, lambda: bool(self._used) or self._closed)

    def _loop(self) -> None:
        backend = self._backend
        warm_now = backend.warm_up_pays_when_busy
        while True:
            if self._closed:
                for queue in (self._ready, self._cold):
                    while queue:
                        backend.close(queue.popleft())
                return
            until_quiet = self._until_quiet()
            quiet = until_quiet == 0.0
            if len(self._ready) + len(self._cold) < self._size and (quiet or any(self._paid)):
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
            idle_for = time.monotonic() - self._last_active if quiet else -1.0
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
            # Nothing to do now: park when the pool is full and warm (a take rings), otherwise look again
            # when the caller may count as quiet, or idle for cold instances to warm.
            timeout: float | None
            if not (self._cold or len(self._ready) < self._size):
                timeout = None
            elif not quiet:
                timeout = QUIET_S if until_quiet is None else until_quiet
            else:
                timeout = max(0.001, IDLE_S - idle_for)
            self._wake.sleep(timeout, lambda: len(self._ready) + len(self._cold) < self._size or self._closed)
