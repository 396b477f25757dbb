"""Pristine guest instances prepared ahead of time, off the caller's hot path.

Instantiating the guest costs ~0.7 ms and closing a store ~0.2 ms, and the
first call into a new instance pays ~1 ms more for first-touch page faults
(copy-on-write of the snapshot heap that the parser, compiler and shim touch).
A `Sandbox` keeps a few instances ready on a background thread: each is
instantiated and then *warmed* by running the shim on the trusted no-op
program ``pass``, and used stores are closed there too, so a run only pays for
its own work.

Every instance serves exactly one user run. The warm-up runs none of the
user's code and the shim resets everything it touches (stdout/stderr, random
seed, recursion limit, `tools`, linecache) at the start of each run, so
pre-warming changes latency, never isolation.
"""

from __future__ import annotations

import collections
import json
import threading
import time

import wasmtime
from wasmtime.component import Func

from ._runstate import RunState, enter_run, leave_run
from ._runtime import Runtime

_INSTANTIATE_FUEL = 10**12  # start-up work only; reset to the run's budget before the call
_INSTANTIATE_TICKS = 10**9


_WARM_UP = json.dumps(
    {"code": "pass", "recursion_limit": 1000, "max_value_chars": 1, "seed": 0, "tools": [], "cwd": None}
)


def warm_up(store: wasmtime.Store, func: Func) -> None:
    """Run the shim once on ``pass`` so the pages every run touches are already private."""
    enter_run(RunState(deadline_ns=time.monotonic_ns() + 10**10, max_output_bytes=1024))
    try:
        func(store, _WARM_UP)
    finally:
        leave_run()


def instantiate(rt: Runtime, memory_bytes: int) -> tuple[wasmtime.Store, Func]:
    """A fresh store and the guest's ``run`` export. Raises WasmtimeError if the memory cap is too small."""
    store = wasmtime.Store(rt.engine)
    try:
        store.set_fuel(_INSTANTIATE_FUEL)
        store.set_limits(memory_size=memory_bytes)
        store.set_wasi(wasmtime.WasiConfig())
        store.set_epoch_deadline(_INSTANTIATE_TICKS)
        instance = rt.linker.instantiate(store, rt.component)
        func = instance.get_func(store, "run")
        assert func is not None, "guest image has no `run` export"
    except BaseException:
        store.close()
        raise
    return store, func


class InstancePool:
    """Keeps up to `size` ready instances for one memory cap; closes used stores in the background."""

    def __init__(self, rt: Runtime, memory_bytes: int, size: int) -> None:
        self._rt = rt
        self.memory_bytes = memory_bytes
        self._size = size
        self._ready: collections.deque[tuple[wasmtime.Store, Func]] = collections.deque()
        self._used: collections.deque[wasmtime.Store] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="wasmrun-prewarm", daemon=True)
        self._thread.start()

    def take(self) -> tuple[wasmtime.Store, Func]:
        """A fresh instance: a ready one if any, else one made now."""
        try:
            item = self._ready.popleft()
        except IndexError:
            item = instantiate(self._rt, self.memory_bytes)
        self._wake.set()
        return item

    def discard(self, store: wasmtime.Store) -> None:
        """Hand a used store over to be closed off the hot path."""
        if self._closed:
            store.close()
            return
        self._used.append(store)
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def _loop(self) -> None:
        while True:
            while self._used:
                self._used.popleft().close()
            if self._closed:
                while self._ready:
                    self._ready.popleft()[0].close()
                return
            if len(self._ready) < self._size:
                try:
                    store, func = instantiate(self._rt, self.memory_bytes)
                except wasmtime.WasmtimeError:
                    return  # the cap is too small to start at all: runs will report it
                try:
                    warm_up(store, func)
                except wasmtime.WasmtimeError:
                    store.close()  # e.g. the memory cap leaves no room: runs will start cold
                    self._size = 0
                    continue
                self._ready.append((store, func))
                continue
            self._wake.wait()
            self._wake.clear()
