"""Resource limits for one run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# Upper bounds: anything above is a mistake, not a wish for "more". A bound is
# never "unlimited": every run must end.
_MAX_TIMEOUT_S = 24 * 3600.0
_MAX_FUEL = 10**15  # roughly hours of guest CPU
_MAX_MEMORY = 4 * GiB  # wasm32 address space
_MIN_MEMORY = 64 * MiB  # the interpreter snapshot alone needs most of this
_MAX_OUTPUT = 1 * GiB
_MAX_CODE = 64 * MiB
_MAX_RECURSION = 20_000  # deeper Python recursion overflows the wasm stack instead


def _show(value: Any) -> str:
    """`repr(value)`, short even for ints too long to print (> 4300 digits raise in str())."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"an int of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Limits.{name} must be an int, got {type(value).__name__}: {_show(value)}")
    if not low <= value <= high:
        raise ValueError(f"Limits.{name} must be between {low:,} and {high:,}, got {_show(value)}")
    return value


def _check_seconds(name: str, value: Any, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Limits.{name} must be a number of seconds, got {type(value).__name__}: {_show(value)}")
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(f"Limits.{name} must be > 0 and <= {high:g} seconds, got {_show(value)}") from None
    if math.isnan(seconds) or seconds <= 0 or seconds > high:
        raise ValueError(f"Limits.{name} must be > 0 and <= {high:g} seconds, got {_show(value)}")
    return seconds


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run may consume. Every field has a finite default; none can be disabled.

    >>> Limits(timeout_s=2, memory_bytes=128 * 1024 * 1024)
    Limits(timeout_s=2.0, fuel=50000000000, memory_bytes=134217728, ...)

    * ``timeout_s``: wall-clock deadline, which also stops blocking code
      (``time.sleep``, ``select``, slow tool calls).
    * ``fuel``: guest CPU budget in wasm instructions (about 1e10 per second of
      pure-Python work here; the default is ~5 s of compute).
    * ``memory_bytes``: cap on the guest's linear memory; growth beyond it makes
      the guest raise ``MemoryError``.
    * ``max_output_bytes``: cap on each of stdout and stderr; the output is kept
      up to the cap and the run ends with ``output_limit``.
    * ``max_code_bytes``: largest accepted source code (UTF-8 bytes).
    * ``recursion_limit``: Python recursion depth (``sys.setrecursionlimit``).
    * ``max_value_chars``: longest ``repr`` kept for the value of the last expression.
    * ``max_scratch_bytes``: quota for files the guest writes (see ``Sandbox.run(files=...)``).

    Invalid values raise ``TypeError`` (wrong type) or ``ValueError`` (out of range).
    """

    timeout_s: float = 10.0
    fuel: int = 50_000_000_000
    memory_bytes: int = 256 * MiB
    max_output_bytes: int = 1 * MiB
    max_code_bytes: int = 1 * MiB
    recursion_limit: int = 1_000
    max_value_chars: int = 100_000
    max_scratch_bytes: int = 64 * MiB

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "timeout_s", _check_seconds("timeout_s", self.timeout_s, _MAX_TIMEOUT_S))
        _check_int("fuel", self.fuel, 1, _MAX_FUEL)
        _check_int("memory_bytes", self.memory_bytes, _MIN_MEMORY, _MAX_MEMORY)
        _check_int("max_output_bytes", self.max_output_bytes, 1, _MAX_OUTPUT)
        _check_int("max_code_bytes", self.max_code_bytes, 1, _MAX_CODE)
        _check_int("recursion_limit", self.recursion_limit, 50, _MAX_RECURSION)
        _check_int("max_value_chars", self.max_value_chars, 1, _MAX_OUTPUT)
        _check_int("max_scratch_bytes", self.max_scratch_bytes, 0, _MAX_MEMORY)


def check_limits(limits: object) -> None:
    """Raise TypeError unless `limits` is a `Limits` or None (the default of whatever takes it)."""
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits must be a wasmrun.Limits, got {type(limits).__name__}")
