"""Audit records of tool calls, and an append-only JSONL sink for them."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Literal

import msgspec

Source = Literal["guest", "model"]
Decision = Literal["allowed", "denied", "invalid"]
Outcome = Literal["ok", "error", "denied", "invalid", "timeout"]


class ToolCallRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One call of a tool, from guest code or from a model's structured tool call.

    ``arguments`` are the validated arguments when validation passed, else the
    raw payload as received (a string, capped). ``result`` is the JSON value the
    caller received when ``outcome == "ok"``; ``error`` the message otherwise.

    ``gc=False``: a record holds only strings, numbers and the JSON values of a
    call, which never refer back to it, so it cannot be part of a reference
    cycle; untracked, the thousands a tool-heavy run keeps are not traversed by
    every collection the host's later allocations trigger.
    """

    id: int
    tool: str
    source: Source
    run_id: str
    arguments: Any
    decision: Decision
    reason: str | None
    outcome: Outcome
    result: Any = None
    error: str | None = None
    started_at: float
    duration_s: float


class AuditLog:
    """Append every tool-call record (and the code that made it) to a JSONL file.

    Thread-safe; each line is one JSON object: the record's fields plus
    ``"code"`` (the guest code of the run, or null for a model's direct call).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._encoder = msgspec.json.Encoder()

    def write(self, record: ToolCallRecord, code: str | None) -> None:
        entry = {**msgspec.structs.asdict(record), "code": code, "logged_at": time.time()}
        try:
            line = msgspec.json.encode(entry)
        except (UnicodeError, TypeError, ValueError):
            # e.g. a lone surrogate in a handler's error message: keep the entry, replace what can't be encoded
            line = msgspec.json.encode(_scrub(entry))
        with self._lock, self.path.open("ab") as f:
            f.write(line + b"\n")

    def read(self) -> list[dict[str, Any]]:
        """All records written so far (for tests and tools that show the log)."""
        if not self.path.exists():
            return []
        decoder = msgspec.json.Decoder()
        return [decoder.decode(line) for line in self.path.read_bytes().splitlines() if line.strip()]


def _scrub(value: Any, depth: int = 0) -> Any:
    """`value` with every string made valid UTF-8 and anything unencodable replaced by its repr."""
    if depth > 200:
        return "<nested too deeply>"
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrub(str(k), depth + 1): _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _scrub(repr(value), depth + 1)
