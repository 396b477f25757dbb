"""The default image: the compiled guest component and everything built once per process.

An `Engine`, the compiled `Component` and a `Linker` with wasmrun's host
functions are immutable once built and safe to share between threads, so every
`Sandbox` of a process uses the same `Runtime` (compiled code is mapped once).
Per-run state lives in a `Store` and a `RunState`, never here. `ComponentBackend`
is the `wasmrun.images.Backend` of this image.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import wasmtime
from wasmtime.component import Component, Func, Linker

from ... import _sigint
from ..._limits import Limits
from ..._runstate import RunState
from .._backend import MAX_WASM_STACK, Backend, EpochTicker, GuestTrap
from . import _build, _bytelists, _fastcall, _wasi
from ._vfs import ROOT, VirtualFS

__all__ = ["CONFIG_TAG", "ComponentBackend", "Runtime", "shared_runtime"]

# Engine settings are part of the compiled artifact's cache key: metered and
# unmetered code differ, so there is exactly one configuration.
CONFIG_TAG = "fuel-epoch-stack2m-v1"


def _engine() -> wasmtime.Engine:
    # Everything else is wasmtime's default, which is already the fastest code for this guest
    # (checked 2026-12-04 on `sum(i*i for i in range(10**6))`, benchmarks/README.md "CPU loop"):
    # cranelift "speed", 4 GiB reservations with guard pages and signal-based traps (no explicit
    # bounds checks). `memory_may_move = False` changed nothing; turning off the table-access
    # Spectre mitigation gave ~3 % and stays on. Fuel (~12 %) and epoch checks (~12 % more) are the
    # price of the limits; the rest of the gap to native is the interpreter build.
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.max_wasm_stack = MAX_WASM_STACK
    return wasmtime.Engine(config)


def _tool_call(run: RunState, name: str, args: str) -> tuple[bool, str]:
    """The guest's `host.call`: (True, result JSON) or (False, error message)."""
    ok, payload = run.call_tool(name, args)
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
        _bytelists.install()
        self.engine = _engine()
        self.component: Component = _build.load_component(self.engine, CONFIG_TAG, log=log)
        self.linker = Linker(self.engine)
        self.linker.add_wasip2()
        _wasi.install(
            self.linker,
            self.engine,
            self.component,
            extra={"wasmrun:sandbox/host": {"call": _host_call, "output": _host_output}},
            fast={"wasmrun:sandbox/host": lambda inst: _fastcall.install(inst, RunState.call_tool, _host_output)},
        )
        self.ticker = EpochTicker(self.engine)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def shared_runtime(log: Callable[[str], None] | None = None) -> Runtime:
    """The process-wide runtime, created on first use (building the image if needed)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(log=log)
        return _runtime


# --------------------------------------------------------------------------- backend

_INSTANTIATE_FUEL = 10**12  # start-up work only; reset to the run's budget before the call
_INSTANTIATE_TICKS = 10**9

_WARM_UP = json.dumps(
    {"code": "pass", "recursion_limit": 1000, "max_value_chars": 1, "seed": 0, "tools": [], "cwd": None}
)


class ComponentInstance:
    """A fresh instance of the component, its ``run`` export, and its files (None: no filesystem)."""

    __slots__ = ("func", "store", "vfs")

    def __init__(self, store: wasmtime.Store, func: Func) -> None:
        self.store = store
        self.func = func
        self.vfs: VirtualFS | None = None


class ComponentBackend(Backend[ComponentInstance]):
    """The default image: CPython 3.14 + the standard library, a componentize-py WASI-p2 component."""

    name: ClassVar[str] = "default"
    default_prewarm: ClassVar[int] = 4
    # The warm-up runs the shim once: it makes the pages every run writes private ahead of
    # time, at the cost of a run. Worth it only while the caller is idle.
    warm_up_pays_when_busy: ClassVar[bool] = False

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.ticker = runtime.ticker
        self._image_id: str | None = None

    def instantiate(self, memory_bytes: int) -> ComponentInstance:
        rt = self.runtime
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
            _sigint.close(store)
            raise
        return ComponentInstance(store, func)

    def warm_up(self, instance: ComponentInstance) -> None:
        """Run the shim once on ``pass`` so the pages every run touches are already private."""
        instance.func(instance.store, _WARM_UP)

    def prepare(
        self, instance: ComponentInstance, state: RunState, inputs: dict[str, bytes] | None, limits: Limits
    ) -> str | None:
        # The files live with the instance: a session's calls share them, a one-shot run has its own.
        if instance.vfs is None:
            if inputs is None:
                return None
            instance.vfs = VirtualFS(inputs, limits.max_scratch_bytes)
        else:
            instance.vfs.quota_bytes = limits.max_scratch_bytes
            if inputs:
                instance.vfs.add_inputs(inputs)
        state.guest = instance.vfs
        return ROOT

    def call(self, instance: ComponentInstance, request: str) -> str:
        try:
            raw: str = instance.func(instance.store, request)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise GuestTrap(str(exc)) from None
        return raw

    def files(self, instance: ComponentInstance, state: RunState) -> dict[str, bytes]:
        fs = _wasi.files_of(state)
        return fs.outputs() if fs is not None else {}

    def close(self, instance: ComponentInstance) -> None:
        _sigint.close(instance.store)

    def image_id(self) -> str:
        if self._image_id is None:
            self._image_id = f"{self.name}-{_build.image_hash()[:24]}"
        return self._image_id

    def describe(self) -> dict[str, Any]:
        return {"image": self.name, "python": "3.14 (componentize-py)", "image_hash": _build.image_hash()[:24]}
