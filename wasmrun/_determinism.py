"""The virtual clock and entropy of a deterministic run (``Sandbox(deterministic=True)``).

A deterministic run must print the same bytes every time, so nothing the guest
can observe may come from the host's clocks or entropy. Both come through WASI
host functions that wasmrun implements (the default image's
``wasi:clocks/*`` and ``wasi:random/*``, the scientific image's
``clock_time_get``, ``poll_oneoff`` and ``random_get``), so the run's
`VirtualEnvironment` answers them instead. Doing it in the host rather than by
patching ``time`` and ``os`` inside the guest means guest code cannot get the
real clock back (``importlib.reload(time)``, ``ctypes``-free C calls) because
there is no real clock behind the interface.

The virtual time (documented in the README):

* The wall clock starts at **2000-01-01T00:00:00Z** (`EPOCH_NS`), the monotonic
  clock (``time.monotonic``, ``time.perf_counter``) at 1 s (`MONOTONIC_START_NS`);
  CPU-time clocks read the monotonic clock.
* Every clock read advances both by `STEP_NS` (1 ms) *after* returning, so time
  is strictly increasing, a loop that waits for time to pass terminates, and
  the n-th read of a run always returns the same instant.
* A sleep or timed wait (``time.sleep``, ``select`` timeouts) does not wait: it
  advances the virtual clock to its wake-up time and returns at once. The
  run's real deadline (``Limits.timeout_s``) still applies.

Entropy (``os.urandom``, ``random.SystemRandom``, ``secrets``, ``uuid.uuid4``,
the hash seed of interpreters that draw one) is a stream seeded by the run's
seed, separate from the guest's ``random`` module (which the guest shim seeds
with the same seed).
"""

from __future__ import annotations

import hashlib

#: 2000-01-01T00:00:00Z in nanoseconds since the Unix epoch: where the virtual wall clock starts.
EPOCH_NS = 946_684_800 * 10**9
#: Where the virtual monotonic clock starts (not 0: some code treats 0 as "never").
MONOTONIC_START_NS = 10**9
#: How far every clock read advances the virtual time.
STEP_NS = 1_000_000


class VirtualEnvironment:
    """The clocks and entropy one deterministic run sees. Not thread-safe: one run, one thread."""

    __slots__ = ("_draws", "_key", "elapsed_ns", "seed")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.elapsed_ns = 0
        # Entropy is SHAKE-256 of (seed, draw number): the same bytes on every host and Python version.
        self._key = f"wasmrun-entropy:{seed}:".encode()
        self._draws = 0

    def _read(self) -> int:
        now = self.elapsed_ns
        self.elapsed_ns += STEP_NS
        return now

    def wall_ns(self) -> int:
        """A read of the wall clock (ns since the Unix epoch)."""
        return EPOCH_NS + self._read()

    def monotonic_ns(self) -> int:
        """A read of the monotonic clock (ns)."""
        return MONOTONIC_START_NS + self._read()

    def peek_monotonic_ns(self) -> int:
        """The monotonic time without reading the clock (for timers: no step)."""
        return MONOTONIC_START_NS + self.elapsed_ns

    def wall_to_monotonic(self, wall_ns: int) -> int:
        """The monotonic instant at which the wall clock shows `wall_ns`."""
        return wall_ns - EPOCH_NS + MONOTONIC_START_NS

    def advance_to(self, monotonic_ns: int) -> None:
        """A sleep until `monotonic_ns`: the virtual clock jumps there (never backwards)."""
        self.elapsed_ns = max(self.elapsed_ns, monotonic_ns - MONOTONIC_START_NS)

    def copy(self) -> VirtualEnvironment:
        """An independent environment at the same point (a forked session continues from here)."""
        return VirtualEnvironment.at(self.seed, self.position())

    def position(self) -> tuple[int, int]:
        """How far the clock and the entropy stream have advanced: what a snapshot keeps."""
        return self.elapsed_ns, self._draws

    @classmethod
    def at(cls, seed: int, position: tuple[int, int]) -> VirtualEnvironment:
        """The environment of `seed` advanced to `position` (from `position()`)."""
        env = cls(seed)
        env.elapsed_ns, env._draws = position
        return env

    def random_bytes(self, n: int) -> bytes:
        """`n` bytes of the run's seeded entropy stream (each request is one draw)."""
        self._draws += 1
        return hashlib.shake_256(self._key + str(self._draws).encode()).digest(n) if n > 0 else b""

    def random_u64(self) -> int:
        """A 64-bit integer from the same stream."""
        return int.from_bytes(self.random_bytes(8), "little")
