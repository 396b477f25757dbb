"""Pristine guest instances prepared ahead of time, off the caller's hot path, for any image.

Instantiating a guest, warming it and closing a used store all cost time that
a run should not pay. A `Sandbox` keeps a few instances ready on a background
thread, each made by its image's `Backend.prewarmed`: a fresh instance warmed
with trusted code only (the default image runs its shim on the no-op program
``pass`` so that the pages every run touches are already private; the
scientific image comes with numpy, pandas and matplotlib imported). Used
instances are disposed of there too, so a run only pays for its own work.
When no instance is ready, `Backend.fallback` makes one on the spot.

Every instance serves exactly one user run. The warm-up runs none of the
user's code and the guest shim resets everything a run may see (stdout/stderr,
random seed, recursion limit, `tools`, working directory) at the start of each
run, so pre-warming changes latency, never isolation.
"""

from __future__ import annotations

import collections
import threading
from typing import Generic

import wasmtime

from .. import _shutdown
from ._backend import Backend, GuestTrap, I


class InstancePool(Generic[I]):
    """Keeps up to `size` ready instances of one backend for one memory cap; disposes of used ones in the background."""

    def __init__(self, backend: Backend[I], memory_bytes: int, size: int) -> None:
        self._backend = backend
        self.memory_bytes = memory_bytes
        self._size = size
        self._ready: collections.deque[I] = collections.deque()
        self._used: collections.deque[I] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="wasmrun-prewarm", daemon=True)
        self._thread.start()
        _shutdown.register(self)

    def take(self, code: str) -> I:
        """A fresh instance for `code`: a ready one if any, else one made now (`Backend.fallback`)."""
        try:
            item = self._ready.popleft()
        except IndexError:
            item = self._backend.fallback(self.memory_bytes, code)
        self._wake.set()
        return item

    def discard(self, instance: I) -> None:
        """Hand a used instance over to be disposed of off the hot path."""
        if self._closed:
            self._backend.close(instance)
            return
        self._used.append(instance)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def stop(self, timeout: float) -> None:
        """Close, and wait for the thread to dispose of its instances (at interpreter exit)."""
        self.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        backend = self._backend
        while True:
            while self._used:
                backend.close(self._used.popleft())
            if self._closed:
                while self._ready:
                    backend.close(self._ready.popleft())
                return
            if len(self._ready) < self._size:
                try:
                    instance = backend.prewarmed(self.memory_bytes)
                except (wasmtime.WasmtimeError, wasmtime.Trap, GuestTrap):
                    # e.g. the memory cap leaves no room: runs start cold (and report it if they cannot start)
                    self._size = 0
                    continue
                if self._closed:
                    backend.close(instance)
                    continue
                self._ready.append(instance)
                continue
            self._wake.wait()
            self._wake.clear()
