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

import contextlib
import heapq
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import wasmtime

from .. import _shutdown
from .._limits import Limits
from .._runstate import RunState, enter_run, leave_run

TICK_S = 0.005  # epoch period for deadlines counted in ticks (the fallback, see `EpochTicker`)
CHECK_S = 0.02  # epoch period for runs checked by the deadline callback: how late Ctrl-C or a cancel may be seen
_TICK_NS = int(TICK_S * 1e9)
_CHECK_NS = int(CHECK_S * 1e9)
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
    """Advances an engine's epoch while at least one run is active on it: periodically, and at each run's deadline.

    A run that registers its wall-clock deadline (`running`) is checked by the
    epoch-deadline callback (`wasmrun._deadline`) at every epoch increment, so
    the increments are scheduled on the clock: every `CHECK_S` (Ctrl-C and a
    cancelled run are noticed then) and once at each registered deadline, by a
    single wait that ends there. Counting ticks instead lets a loaded machine
    stretch a deadline: each of the many short waits may wake late, and on a
    2-core machine running 8 busy processes 8 ticks of 5 ms took 565 ms. One
    wait of the whole remaining time wakes about as late as any host timer.

    A run entered without a deadline (``with ticker:``, the fallback when the
    callback is unavailable and deadlines are counted in ticks, `ticks_for`)
    makes the ticker advance every `TICK_S` while it lasts.
    """

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._active = 0
        self._counted = 0  # active runs whose deadline is counted in ticks of TICK_S
        self._deadlines: list[int] = []  # heap of registered deadlines not reached yet (monotonic ns)
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

    def _enter(self, *, counted: bool, deadline_ns: int | None = None) -> None:
        with self._cond:
            self._active += 1
            self._counted += counted
            if deadline_ns is not None:
                heapq.heappush(self._deadlines, deadline_ns)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="wasmrun-epoch", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _exit(self, *, counted: bool, deadline_ns: int | None = None) -> None:
        with self._cond:
            self._active -= 1
            self._counted -= counted
            if deadline_ns is not None and deadline_ns in self._deadlines:
                self._deadlines.remove(deadline_ns)
                heapq.heapify(self._deadlines)

    def __enter__(self) -> None:
        self._enter(counted=True)

    def __exit__(self, *exc: object) -> None:
        self._exit(counted=True)

    @contextlib.contextmanager
    def running(self, deadline_ns: int) -> Iterator[None]:
        """While the body runs, advance the epoch every `CHECK_S` and as soon as `deadline_ns` is reached."""
        self._enter(counted=False, deadline_ns=deadline_ns)
        try:
            yield
        finally:
            self._exit(counted=False, deadline_ns=deadline_ns)

    def _loop(self) -> None:
        next_tick = 0
        while True:
            with self._cond:
                while self._active == 0 and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                now = time.monotonic_ns()
                if not next_tick:
                    next_tick = now + (_TICK_NS if self._counted else _CHECK_NS)
                due = min(next_tick, now + _TICK_NS) if self._counted else next_tick
                if self._deadlines:
                    due = min(due, self._deadlines[0])
                if due > now:
                    # A run entering with a nearer deadline wakes us to look again.
                    self._cond.wait((due - now) / 1e9)
                    continue
                while self._deadlines and self._deadlines[0] <= now:
                    heapq.heappop(self._deadlines)
            self._engine.increment_epoch()
            next_tick = time.monotonic_ns() + (_TICK_NS if self._counted else _CHECK_NS)

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

    def warm_up_pays_for(self, code: str) -> bool:
        """Whether a warmed instance saves a run of `code` more than the warm-up costs (see `InstancePool`).

        The pool refills while runs come back to back only while recent runs said yes.
        """
        return self.warm_up_pays_when_busy

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
        """Release everything `instance` holds (its store, any host directory).

        Never raises, except the `KeyboardInterrupt` of a Ctrl-C that came
        meanwhile (closing the store defers it: `wasmrun._sigint.close`).
        """

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
