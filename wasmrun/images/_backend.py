"""The seam between the shared run machinery and one guest image.

`Sandbox` owns everything that is the same for every image: checking the
caller's input, the run's `RunState` (deadline, output caps, tool dispatch,
audit), fuel and epoch deadlines on the store, classifying a trap from the
run's own bookkeeping, and assembling the `Result`. The instance pool
(`wasmrun.images.InstancePool`) is shared too. A `Backend` holds only what differs
between images:

* its engine configuration and the compiled artifact (loaded once per process,
  from wasmrun's private cache),
* its linker with the host functions (defined once),
* making a fresh instance in a new store (`instantiate`), optionally warming it
  with trusted code before any user code runs (`warm_up`),
* giving the run its files (`prepare`) and collecting what it wrote (`files`),
* calling the guest with the run's request (`call`) and handing back its raw
  outcome, a JSON document decoded by the shared `GuestOutcome` decoder,
* disposing of an instance (`close`),
* for sessions, where the image can: copying an instance at rest (`copy`) and
  turning one into bytes and back (`dump`, `load`).

An instance serves either exactly one user run, or the calls of exactly one
`wasmrun.Session` (whose files then live with the instance: `prepare` adds to
them instead of starting over).
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import wasmtime

from .. import _shutdown
from .._limits import Limits
from .._runstate import RunState, enter_run, leave_run

TICK_S = 0.005  # epoch period: deadlines for running code hold to within a few ms
# wasmtime's default 512 KiB wasm stack overflows on ~200 nested brackets in the
# parser; 2 MiB is the largest that wasmtime-py supports without aborting.
MAX_WASM_STACK = 2 * 1024 * 1024
_WARM_UP_OUTPUT = 64 * 1024  # what trusted warm-up code may print (it should print nothing)


class GuestTrap(Exception):
    """The guest stopped abnormally (a wasm trap, or a host function that stopped it).

    The message is wasmtime's (or the host function's) text; the run's own
    `RunState` decides what it means (`_result.classify_trap`).
    """


class GuestInstance(Protocol):
    """What the shared code needs from a backend's instance: its store (fuel, epoch deadline)."""

    @property
    def store(self) -> wasmtime.Store: ...


I = TypeVar("I", bound=GuestInstance)  # noqa: E741 - the conventional name for "instance type"


class EpochTicker:
    """Advances an engine's epoch every `TICK_S` while at least one run is active on it."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._active = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        _shutdown.register(self)

    def stop(self, timeout: float) -> None:
        """Stop ticking and join the thread (at interpreter exit)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

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
        pause = threading.Event()
        while True:
            with self._cond:
                while self._active == 0 and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
            pause.wait(TICK_S)
            self._engine.increment_epoch()

    @staticmethod
    def ticks_for(seconds: float) -> int:
        return max(1, math.ceil(seconds / TICK_S)) + 1


class Backend(ABC, Generic[I]):
    """One guest image: engine, compiled artifact, linker, and how to make, call and dispose of instances.

    A backend is built once per process (see `wasmrun.images.backend`) and shared by
    every `Sandbox` and thread; per-run state lives in the instance and the
    `RunState`, never here.
    """

    name: ClassVar[str]
    #: Ready instances a `Sandbox` keeps by default (its ``prewarm``).
    default_prewarm: ClassVar[int]
    #: Deadline for `warm_up`, which runs trusted code only.
    warm_up_timeout_s: ClassVar[float] = 10.0
    #: Whether the pool should warm instances up even while runs come back to back. True when a
    #: warm-up saves a run more than it costs (imports); False when it only moves work off the
    #: hot path at the same CPU cost, which pays only while the caller is idle.
    warm_up_pays_when_busy: ClassVar[bool] = True

    engine: wasmtime.Engine
    ticker: EpochTicker

    @abstractmethod
    def instantiate(self, memory_bytes: int) -> I:
        """A fresh instance in a new store capped at `memory_bytes`.

        Raises `wasmtime.WasmtimeError` (or `wasmtime.Trap`) when the cap is too
        small to start the interpreter at all.
        """

    @abstractmethod
    def warm_up(self, instance: I) -> None:
        """Run trusted code in `instance` so that a user run starts faster; called off the hot path."""

    def prewarmed(self, memory_bytes: int) -> I:
        """A fresh instance, warmed; what the pool keeps ready. Called off the hot path."""
        instance = self.instantiate(memory_bytes)
        self.warm(instance)
        return instance

    def warm(self, instance: I) -> None:
        """`warm_up` under its own run state and deadline; closes `instance` if that fails. Off the hot path."""
        state = RunState(
            deadline_ns=time.monotonic_ns() + int(self.warm_up_timeout_s * 1e9), max_output_bytes=_WARM_UP_OUTPUT
        )
        enter_run(state)
        try:
            self.warm_up(instance)
        except BaseException:
            self.close(instance)
            raise
        finally:
            leave_run()

    def fallback(self, memory_bytes: int, code: str) -> I:
        """An instance for `code` when no warmed one is ready (on the run's hot path)."""
        return self.instantiate(memory_bytes)

    def fresh(self, memory_bytes: int, code: str, *, warm: bool = False) -> I:
        """`fallback`, or with `warm` an instance in the same state as a ready one (`prewarmed`).

        Deterministic runs ask for `warm`: what a run observes must not depend on
        whether the pool had an instance ready. Falls back to a cold instance
        when the memory cap leaves no room for a warm one.
        """
        if warm:
            try:
                return self.prewarmed(memory_bytes)
            except (wasmtime.WasmtimeError, wasmtime.Trap, GuestTrap):
                pass
        return self.fallback(memory_bytes, code)

    @abstractmethod
    def prepare(self, instance: I, state: RunState, inputs: dict[str, bytes] | None, limits: Limits) -> str | None:
        """Bind `state` to `instance` and give the run its input files; return the guest's working directory."""

    @abstractmethod
    def call(self, instance: I, request: str) -> str:
        """Run one request (JSON) in `instance`; return the guest's outcome (JSON) or raise `GuestTrap`."""

    @abstractmethod
    def files(self, instance: I, state: RunState) -> dict[str, bytes]:
        """The files the run created, by path relative to its working directory."""

    def memory_size(self, instance: I) -> int | None:
        """The guest's linear memory size after a run, if the image can tell (`RunStats.memory_bytes`)."""
        return None

    @abstractmethod
    def close(self, instance: I) -> None:
        """Release everything `instance` holds (its store, any host directory). Never raises."""

    def describe(self) -> dict[str, Any]:
        """Facts about the image for diagnostics (versions, paths)."""
        return {"image": self.name}

    def image_id(self) -> str:
        """What identifies this image's guest state format: a session snapshot loads only into the same id."""
        return self.name

    # -- sessions ------------------------------------------------------------------------
    def copy(self, instance: I, memory_bytes: int) -> I | None:
        """A new, independent instance whose guest state is a copy of `instance`'s, or None if this image cannot.

        `instance` is at rest (between calls). None makes a session fork by
        re-executing its calls instead.
        """
        return None

    def dump(self, instance: I) -> bytes | None:
        """`instance`'s guest state (at rest) as bytes for `load`, or None if this image cannot."""
        return None

    def load(self, data: bytes, memory_bytes: int) -> I:
        """A new instance holding the state `dump` gave; raises ValueError for data it cannot load."""
        raise ValueError(f"the {self.name} image cannot load instance state")
