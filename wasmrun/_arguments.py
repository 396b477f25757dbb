"""Checking what the caller passes to a run (`Sandbox.run`, `Session.run`, the async ones through them) and to
`Sandbox.session`.

One place, so that a run and a session's call refuse the same arguments with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._errors import ReentrancyError
from ._limits import _MAX_FUEL, _MAX_TIMEOUT_S, Limits, _check_int, _check_seconds, check_limits
from ._runstate import current_run
from .tools import in_tool_handler


def check_call(
    code: object, limits: Limits | None, files: Mapping[str, bytes | str] | None, *, attempt: str
) -> dict[str, bytes] | None:
    """Raise for bad `code`, `limits` or `files`, or for a call from inside a run; return the checked `files`.

    A run started from a tool handler, or from inside a run on this thread, would nest inside the
    run in progress; it is refused. `attempt` says in the `ReentrancyError` what was tried ("start a
    sandbox run").
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    check_limits(limits)
    if current_run(required=False) is not None or in_tool_handler():
        raise ReentrancyError(
            f"a tool handler tried to {attempt} from inside a run on the same thread; re-entrant runs are refused"
        )
    return check_files(files)


def check_files(files: Mapping[str, bytes | str] | None) -> dict[str, bytes] | None:
    """`files` as a dict of relative path to bytes (str is UTF-8 encoded); TypeError/ValueError when invalid."""
    if files is None:
        return None
    if not isinstance(files, Mapping):
        raise TypeError(f"files must be a mapping of name to bytes, got {type(files).__name__}")
    checked: dict[str, bytes] = {}
    for name, data in files.items():
        if not isinstance(name, str) or not name or name.startswith("/") or "\0" in name:
            raise ValueError(f"file name {name!r} must be a non-empty relative path")
        if any(part in ("", ".", "..") for part in name.split("/")):
            raise ValueError(f"file name {name!r} must not contain empty, '.' or '..' parts")
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"file {name!r} must be bytes or str, got {type(data).__name__}")
        checked[name] = bytes(data)
    return checked


def check_totals(
    limits: Limits, total_fuel: int | None, lifetime_s: float, idle_timeout_s: float
) -> tuple[int, float, float]:
    """Validated session totals; ``total_fuel`` defaults to 20 calls' worth of fuel."""
    if total_fuel is None:
        total_fuel = min(_MAX_FUEL, 20 * limits.fuel)
    _check_int("total_fuel", total_fuel, 1, _MAX_FUEL)
    return (
        total_fuel,
        _check_seconds("lifetime_s", lifetime_s, 30 * _MAX_TIMEOUT_S),
        _check_seconds("idle_timeout_s", idle_timeout_s, 30 * _MAX_TIMEOUT_S),
    )
