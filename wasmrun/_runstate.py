"""Per-run bookkeeping shared by the host functions of one guest instance.

Host functions are registered once per linker, but every run needs its own
output buffers, timers and deadline. wasmtime calls host functions on the thread
that entered the guest, so the run in progress is found through a thread-local:
concurrent runs on other threads each see their own state, and outcomes are
classified from this state, never from wasmtime-py's process-global
"last exception" (which another thread may have overwritten).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._determinism import VirtualEnvironment

_local = threading.local()
_INTERRUPT_POLL_NS = 50_000_000  # how often a blocked wait looks at `RunState.interrupted`
_MAX_RANDOM_BYTES = 1 << 26  # one request; CPython asks for at most a few KiB


class Trap(Exception):
    """Raised inside a host function to stop the guest; the message names the reason."""


@dataclass
class RunState:
    """Everything the host knows about one run while the guest executes."""

    deadline_ns: int
    max_output_bytes: int
    cancel: threading.Event = field(default_factory=threading.Event)
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    timed_out: bool = False
    interrupted: bool = False  # Ctrl-C arrived during the run (see _deadline.interrupt_on_sigint)
    cancelled: bool = False  # the run's `cancel` flag stopped it (`AsyncSandbox`; see `_deadline`)
    output_exceeded: str | None = None
    internal_error: str | None = None
    tool_error: str | None = None
    tool_calls: int = 0
    exit_code: int | None = None  # set when the guest called wasi:cli/exit (os._exit)
    tool_dispatch: Any = None
    # Named binary results the guest handed over (charts as PNG), capped at max_artifact_bytes in total.
    artifacts: dict[str, bytes] = field(default_factory=dict)
    max_artifact_bytes: int = 0
    artifact_bytes: int = 0
    outcome: str | None = None  # the guest's outcome, for images that return it through a host call
    # The backend's per-run data for its host functions (the scientific image's instance, the default
    # image's virtual filesystem or None for no filesystem at all).
    guest: Any = None
    # A deterministic run's virtual clocks and entropy; None: the host's real ones.
    virtual: VirtualEnvironment | None = None
    _pollables: dict[int, int] = field(default_factory=dict)
    _next_rep: int = 16

    # -- timers ---------------------------------------------------------------
    def new_pollable(self, deadline_ns: int) -> int:
        rep = self._next_rep
        self._next_rep += 1
        self._pollables[rep] = deadline_ns
        return rep

    def drop_pollable(self, rep: int) -> None:
        self._pollables.pop(rep, None)

    def pollable_ready(self, rep: int) -> bool:
        now = self.virtual.peek_monotonic_ns() if self.virtual is not None else time.monotonic_ns()
        return self._pollables.get(rep, 0) <= now

    # -- the guest's clocks (timers and `monotonic_ns` share one time base) ----------
    def monotonic_ns(self) -> int:
        """A read of the guest's monotonic clock: the host's, or the virtual one of a deterministic run."""
        return self.virtual.monotonic_ns() if self.virtual is not None else time.monotonic_ns()

    def wall_ns(self) -> int:
        """A read of the guest's wall clock (ns since the Unix epoch)."""
        return self.virtual.wall_ns() if self.virtual is not None else time.time_ns()

    def timer_base_ns(self) -> int:
        """The monotonic time a relative timer counts from (not a clock read: the virtual clock stays)."""
        return self.virtual.peek_monotonic_ns() if self.virtual is not None else time.monotonic_ns()

    def wall_to_monotonic_ns(self, wall_ns: int) -> int:
        """The monotonic instant at which the guest's wall clock will show `wall_ns` (absolute timers)."""
        if self.virtual is not None:
            return self.virtual.wall_to_monotonic(wall_ns)
        return time.monotonic_ns() + (wall_ns - time.time_ns())

    def random_bytes(self, n: int) -> bytes:
        """`n` bytes of entropy for the guest: the host's, or a deterministic run's seeded stream."""
        if n > _MAX_RANDOM_BYTES:
            raise Trap(f"the guest asked for {n:,} random bytes at once")
        return self.virtual.random_bytes(n) if self.virtual is not None else os.urandom(n)

    def check_deadline(self) -> None:
        if self.interrupted:
            raise Trap("interrupted (KeyboardInterrupt)")
        if self.cancel.is_set():
            self.cancelled = True
            raise Trap("run cancelled")
        if time.monotonic_ns() >= self.deadline_ns:
            self.timed_out = True
            raise Trap("deadline exceeded")

    def wait_any(self, reps: list[int]) -> list[int]:
        """Block until one of `reps` is ready, but never past the run's deadline."""
        if self.virtual is not None:
            # Virtual time: a wait does not block, the clock jumps to the first wake-up instead.
            self.check_deadline()
            wakes = [self._pollables.get(rep, 0) for rep in reps]
            if wakes and min(wakes) > self.virtual.peek_monotonic_ns():
                self.virtual.advance_to(min(wakes))
            now = self.virtual.peek_monotonic_ns()
            return [i for i, wake in enumerate(wakes) if wake <= now]
        while True:
            self.check_deadline()
            now = time.monotonic_ns()
            wakes = [self._pollables.get(rep, 0) for rep in reps]
            ready = [i for i, wake in enumerate(wakes) if wake <= now]
            if ready or not reps:
                return ready
            wake = min(min(wakes), self.deadline_ns)
            # In slices: a Ctrl-C handler only sets `interrupted` (it must not take the event's lock).
            self.cancel.wait(min(wake - now, _INTERRUPT_POLL_NS) / 1e9)

    # -- tools ----------------------------------------------------------------
    def call_tool(self, name: str, args: str) -> tuple[bool, str]:
        """A guest's tool call, for every image: (True, result JSON) or (False, error message).

        Traps (`Trap`) when the run's deadline has passed or the dispatch hit it.
        """
        self.check_deadline()
        self.tool_calls += 1
        if self.tool_dispatch is None:
            return False, f"no tool named {name!r}: this sandbox has no tools registered"
        ok, payload = self.tool_dispatch(self, name, args)
        return ok, payload

    # -- artifacts --------------------------------------------------------------
    def add_artifact(self, name: str, data: bytes) -> str | None:
        """Keep a named result (e.g. a chart's PNG); return why it was refused, or None."""
        if not name or len(name) > 255 or "/" in name or "\0" in name or name in (".", ".."):
            return f"invalid artifact name {name!r}"
        if name in self.artifacts:
            return f"an artifact named {name!r} already exists"
        if self.artifact_bytes + len(data) > self.max_artifact_bytes:
            return (
                f"{name}: artifacts would exceed {self.max_artifact_bytes:,} bytes in total "
                "(Limits.max_scratch_bytes); dropped"
            )
        self.artifacts[name] = bytes(data)
        self.artifact_bytes += len(data)
        return None

    # -- output ---------------------------------------------------------------
    def write_output(self, rep: int, data: bytes) -> None:
        if rep == 1:
            buf, name = self.stdout, "stdout"
        elif rep == 2:
            buf, name = self.stderr, "stderr"
        else:
            raise Trap(f"write to unknown stream {rep}")
        room = self.max_output_bytes - len(buf)
        if len(data) > room:
            buf += _utf8_prefix(data, max(room, 0))
            self.output_exceeded = name
            raise Trap(f"{name} exceeded {self.max_output_bytes} bytes")
        buf += data


def _utf8_prefix(data: bytes, size: int) -> bytes:
    """The first `size` bytes of `data`, shortened so no UTF-8 character is cut in half."""
    cut = data[:size]
    for back in range(1, min(4, len(cut)) + 1):
        byte = cut[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): does its sequence fit?
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            return cut if need <= back else cut[:-back]
    return cut


def current_run(required: bool = True) -> Any:
    """The RunState of the run executing on this thread."""
    run = getattr(_local, "run", None)
    if run is None and required:
        raise Trap("host function called outside of a run")
    return run


def enter_run(run: RunState) -> None:
    _local.run = run


def leave_run() -> None:
    _local.run = None
