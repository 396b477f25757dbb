"""The compiled guest and everything that is built once per process and shared.

An `Engine`, the compiled `Component` and a `Linker` with wasmrun's host
functions are immutable once built and safe to share between threads, so every
`Sandbox` of a process uses the same `Runtime` (compiled code is mapped once).
Per-run state lives in a `Store` and a `RunState`, never here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime.component import Component, Linker

from . import _fastcall, _image, _wasi
from ._runstate import RunState

# Engine settings are part of the compiled artifact's cache key: metered and
# unmetered code differ, so there is exactly one configuration.
CONFIG_TAG = "fuel-epoch-stack2m-v1"
# wasmtime's default 512 KiB wasm stack overflows on ~200 nested brackets in the
# parser; 2 MiB is the largest that wasmtime-py supports without aborting.
MAX_WASM_STACK = 2 * 1024 * 1024
TICK_S = 0.005  # epoch period: deadlines for running code hold to within a few ms


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.max_wasm_stack = MAX_WASM_STACK
    return wasmtime.Engine(config)


class _EpochTicker:
    """Advances the engine's epoch every `TICK_S` while at least one run is active."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._active = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> None:
        with self._cond:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="wasmrun-epoch", daemon=True)
                self._thread.start()
            self._cond.notify()

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1

    def _loop(self) -> None:
        stop = threading.Event()
        while True:
            with self._cond:
                while self._active == 0:
                    self._cond.wait()
            stop.wait(TICK_S)
            self._engine.increment_epoch()

    @staticmethod
    def ticks_for(seconds: float) -> int:
        return max(1, math.ceil(seconds / TICK_S)) + 1


def _tool_call(run: RunState, name: str, args: str) -> tuple[bool, str]:
    """The guest's `host.call`: (True, result JSON) or (False, error message)."""
    run.check_deadline()
    run.tool_calls += 1
    if run.tool_dispatch is None:
        return False, f"no tool named {name!r}: this sandbox has no tools registered"
    ok, payload = run.tool_dispatch(run, name, args)
    # Messages may quote the guest's own (possibly invalid) text: keep the WIT string valid.
    return ok, payload.encode("utf-8", "replace").decode("utf-8")


def _host_call(run: RunState, name: str, args: str) -> Any:
    ok, payload = _tool_call(run, name, args)
    return _wasi.Ok(payload) if ok else _wasi.Err(payload)


def _host_output(run: RunState, fd: int, text: str) -> None:
    run.write_output(fd, text.encode("utf-8"))


class Runtime:
    """Engine + compiled component + linker for the default image."""

    def __init__(self, *, log: Callable[[str], None] | None = None) -> None:
        self.engine = _engine()
        self.component: Component = _image.load_component(self.engine, CONFIG_TAG, log=log)
        self.linker = Linker(self.engine)
        self.linker.add_wasip2()
        _wasi.install(
            self.linker,
            self.engine,
            self.component,
            extra={"wasmrun:sandbox/host": {"call": _host_call, "output": _host_output}},
            fast={"wasmrun:sandbox/host": lambda inst: _fastcall.install(inst, _tool_call, _host_output)},
        )
        self.ticker = _EpochTicker(self.engine)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def shared_runtime(log: Callable[[str], None] | None = None) -> Runtime:
    """The process-wide runtime, created on first use (building the image if needed)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(log=log)
        return _runtime
