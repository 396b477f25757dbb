"""The agent's transcript: one JSON object per line for every event of a conversation.

Every event has ``seq`` (1, 2, ...), ``time`` (Unix seconds), ``elapsed_s``
(since the conversation started) and ``type``, one of:

* ``start``: ``task``, ``model``, ``tools`` (names), ``limits``, ``validation``, ``run_limits``.
* ``message``: a message the agent added to the conversation (``role``: system, user
  or tool; ``content``; ``tool_call_id`` for tool results; ``purpose``: task,
  tool_result, validation_feedback, wrap_up).
* ``model_response``: ``turn``, ``purpose`` (main, review, wrap_up), ``message``
  (the assistant message: ``content`` and ``tool_calls``, each with ``id``, ``name``
  and ``arguments`` as sent), ``finish_reason``, ``usage``, ``duration_s``.
* ``tool_call``: one call of a registered tool: the audit record's fields (``id``,
  ``tool``, ``source`` model|guest, ``arguments``, ``decision``, ``reason``,
  ``outcome``, ``result``, ``error``, ``started_at``, ``duration_s``), plus
  ``call_id`` (the model's tool-call id) or ``code_run`` (the run that made it;
  such events follow their run's ``code_run`` event, ``started_at`` has the real time).
* ``code_run``: ``index``, ``call_id``, ``attempt``, ``code`` (in full), ``ok``,
  ``stdout``, ``stderr``, ``value``, ``error`` (kind, type, message, traceback,
  lineno), ``files`` (name -> size in bytes), ``duration_s``, ``fuel_used``,
  ``timeout_s`` (the deadline it had), ``guest_tool_calls``.
* ``retry``: ``attempt`` (the failed one), ``in_a_row`` (failures in a row), ``max_attempts``, ``reason``.
* ``validation``: ``kind`` (empty, schema, validator, review), ``passed``, ``message``.
* ``limit``: ``limit`` (the stop reason) and ``message``.
* ``error``: ``message`` (e.g. the model API failed).
* ``final``: ``answer``, ``output``, ``stop_reason``, ``attempts``, ``failures``,
  ``turns``, ``code_runs``, ``tool_calls`` (counts), ``files`` (names), ``sandbox_time_s``, ``usage``.

Each event is also logged on the ``wasmrun.agent`` logger: a one-line summary at
INFO (DEBUG for messages), the full event as ``extra={"event": ...}``.

`render_transcript` prints a transcript as a readable timeline with rich
(``wasmrun log show FILE``). Transcripts hold untrusted text (model output,
guest output): rendering shows control characters as escapes and never
interprets markup in it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import msgspec
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from ._jsonsafe import ENCODER as _ENCODER
from ._jsonsafe import encode_json

logger = logging.getLogger("wasmrun.agent")

_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


class Transcript:
    """Writes conversation events to a JSONL file (optional), keeps them in memory, and logs them.

    Each line is written and flushed as the event happens, so a transcript of a
    conversation that crashed is complete up to the crash.
    """

    def __init__(self, path: str | Path | None = None, *, log: logging.Logger | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.events: list[dict[str, Any]] = []
        self.logger = log or logger
        self._started = time.time()
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")

    def event(self, type_: str, **data: Any) -> dict[str, Any]:
        """Record one event; returns it (as stored: plain JSON-compatible data)."""
        now = time.time()
        with self._lock:
            raw = {"seq": len(self.events) + 1, "time": now, "elapsed_s": round(now - self._started, 6), "type": type_}
            raw.update(data)
            line = encode_json(raw)
            event: dict[str, Any] = msgspec.json.decode(line)
            self.events.append(event)
            if self._file is not None:
                self._file.write(line + b"\n")
                self._file.flush()
        level = logging.DEBUG if type_ == "message" else logging.INFO
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", summarize(event), extra={"event": event})
        return event

    def close(self) -> None:
        """Close the file (events can no longer be written to it)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Transcript:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_transcript(path: str | Path) -> list[dict[str, Any]]:
    """The events of a JSONL transcript. A truncated last line (a crash mid-write) is skipped.

    Raises ``ValueError`` when a complete line is not a JSON object.
    """
    events: list[dict[str, Any]] = []
    lines = Path(path).read_bytes().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path}: line {number} is not JSON: {exc}") from None
        if not isinstance(event, dict):
            raise ValueError(f"{path}: line {number} is not a JSON object")
        events.append(event)
    return events


# ----------------------------------------------------------------- summaries


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else _ENCODER.encode(value).decode("utf-8", "replace")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _call_text(event: dict[str, Any]) -> str:
    args = event.get("arguments")
    if isinstance(args, dict):
        inner = ", ".join(f"{k}={_short(_ENCODER.encode(v).decode('utf-8', 'replace'), 60)}" for k, v in args.items())
    else:
        inner = _short(args, 80)
    return f"{event.get('tool')}({inner})"


def summarize(event: dict[str, Any]) -> str:
    """A one-line description of an event (used for log messages)."""
    kind = event.get("type")
    if kind == "start":
        return f"start: model {event.get('model')}, task {_short(event.get('task'), 80)!r}"
    if kind == "message":
        return f"message ({event.get('role')}): {_short(event.get('content'), 100)}"
    if kind == "model_response":
        message = event.get("message") or {}
        calls = message.get("tool_calls") or []
        if calls:
            names = ", ".join(str(c.get("name")) for c in calls)
            return f"turn {event.get('turn')}: model calls {names}"
        return f"turn {event.get('turn')} ({event.get('purpose')}): model says {_short(message.get('content'), 100)!r}"
    if kind == "tool_call":
        status = event.get("outcome")
        detail = f": {_short(event.get('error'), 100)}" if event.get("error") else ""
        return f"tool call [{event.get('source')}] {_call_text(event)} -> {status}{detail}"
    if kind == "code_run":
        error = event.get("error")
        status = (
            "ok" if event.get("ok") else f"failed ({error.get('kind')}: {error.get('type')})" if error else "failed"
        )
        lines = len(str(event.get("code", "")).splitlines())
        return f"code run #{event.get('index')} (attempt {event.get('attempt')}, {lines} lines): {status}"
    if kind == "retry":
        return (
            f"retry: attempt {event.get('attempt')} failed ({event.get('in_a_row')} of {event.get('max_attempts')} "
            f"in a row): {event.get('reason')}"
        )
    if kind == "validation":
        verdict = "passed" if event.get("passed") else "failed"
        return f"validation ({event.get('kind')}) {verdict}: {_short(event.get('message'), 100)}"
    if kind == "limit":
        return f"limit reached ({event.get('limit')}): {event.get('message')}"
    if kind == "error":
        return f"error: {event.get('message')}"
    if kind == "final":
        return (
            f"final ({event.get('stop_reason')}, {event.get('attempts')} attempts, {event.get('turns')} turns): "
            f"{_short(event.get('answer'), 100)!r}"
        )
    return f"{kind}"


# ----------------------------------------------------------------- rendering


def _clean(text: Any) -> str:
    """Untrusted text made safe for a terminal: control characters become visible escapes."""
    value = text if isinstance(text, str) else _ENCODER.encode(text).decode("utf-8", "replace")
    return _UNPRINTABLE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), value)


def _clip(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit:,} more characters; --full shows everything ...]"


def _json_preview(value: Any, limit: int | None) -> str:
    text = _ENCODER.encode(value).decode("utf-8", "replace")
    return _clip(text, limit)


def _stamp(event: dict[str, Any]) -> Text:
    return Text(f"{float(event.get('elapsed_s', 0.0)):8.2f}s ", style="dim")


def _line(event: dict[str, Any], label: str, style: str, text: str = "") -> Text:
    line = _stamp(event)
    line.append(f"{label:<11}", style=style)
    if text:
        line.append(" ")
        line.append(_clean(text))
    return line


def render_event(event: dict[str, Any], *, full: bool = False) -> list[RenderableType]:
    """The renderables (rich) showing one transcript event."""
    limit = None if full else 600
    kind = event.get("type")
    out: list[RenderableType] = []
    if kind == "start":
        out.append(_line(event, "start", "bold", f"model {event.get('model')}; tools: {event.get('tools')}"))
        out.append(Panel(Text(_clean(event.get("task", ""))), title="task", title_align="left", border_style="blue"))
    elif kind == "message":
        role = str(event.get("role"))
        purpose = event.get("purpose")
        if role == "tool" and not full:
            return out
        if role == "system" and not full:
            out.append(_line(event, "system", "dim", f"system prompt ({len(str(event.get('content', '')))} chars)"))
            return out
        label = "feedback" if purpose in ("validation_feedback", "wrap_up") else role
        style = "yellow" if label == "feedback" else "blue"
        out.append(_line(event, label, style, _clip(str(event.get("content", "")), limit)))
    elif kind == "model_response":
        message = event.get("message") or {}
        heading = f"turn {event.get('turn')}"
        if event.get("purpose") != "main":
            heading += f" ({event.get('purpose')})"
        heading += f", {float(event.get('duration_s', 0.0)) * 1000:.0f} ms"
        out.append(_line(event, "model", "bold cyan", heading))
        if message.get("content"):
            out.append(Panel(Text(_clip(_clean(message["content"]), limit)), border_style="cyan", expand=False))
        for call in message.get("tool_calls") or []:
            name = str(call.get("name"))
            call_line = Text("             -> ", style="dim")
            if name == "run_code":
                call_line.append("run_code", style="bold magenta")
                code = _code_of(call.get("arguments"))
                call_line.append(f" ({len(code.splitlines())} lines of Python, shown below)", style="dim")
            else:
                call_line.append(_clean(name), style="bold magenta")
                call_line.append(_clean(f"({_clip(str(call.get('arguments')), limit)})"))
            out.append(call_line)
    elif kind == "tool_call":
        outcome = str(event.get("outcome"))
        style = "green" if outcome == "ok" else "red"
        source = f"[{event.get('source')}]"
        head = _line(event, "tool", "bold magenta", f"{source} {_call_text(event)}")
        head.append(f"  {event.get('decision')}/{outcome}", style=style)
        head.append(f"  {float(event.get('duration_s', 0.0)) * 1000:.1f} ms", style="dim")
        out.append(head)
        if event.get("reason"):
            out.append(Text(f"             reason: {_clean(event['reason'])}", style="red"))
        if outcome == "ok":
            preview = _json_preview(event.get("result"), None if full else 240)
            out.append(Text(f"             result: {_clean(preview)}"))
        elif event.get("error"):
            out.append(Text(f"             error: {_clean(event['error'])}", style="red"))
    elif kind == "code_run":
        ok = bool(event.get("ok"))
        head = _line(event, "code", "bold magenta", f"run #{event.get('index')}, attempt {event.get('attempt')}")
        head.append("  ok" if ok else "  failed", style="green" if ok else "bold red")
        head.append(
            f"  {float(event.get('duration_s', 0.0)) * 1000:.0f} ms, {int(event.get('fuel_used', 0)):,} fuel",
            style="dim",
        )
        out.append(head)
        out.append(Syntax(_clean(str(event.get("code", ""))), "python", line_numbers=True, word_wrap=True))
        for stream in ("stdout", "stderr"):
            if event.get(stream):
                out.append(
                    Panel(
                        Text(_clip(_clean(event[stream].rstrip("\n")), limit)),
                        title=stream,
                        title_align="left",
                        border_style="dim",
                    )
                )
        if event.get("value") is not None:
            out.append(Text(f"             value: {_clip(_clean(event['value']), limit)}"))
        if event.get("files"):
            sizes = ", ".join(f"{_clean(n)} ({b:,} bytes)" for n, b in event["files"].items())
            out.append(Text(f"             files: {sizes}", style="green"))
        error = event.get("error")
        if error:
            parts: list[RenderableType] = [Text(_clean(f"{error.get('type')}: {error.get('message')}"), style="bold")]
            if error.get("traceback"):
                parts.append(Text(_clip(_clean(error["traceback"].rstrip()), limit), style="dim"))
            out.append(
                Panel(Group(*parts), title=f"error: {error.get('kind')}", title_align="left", border_style="red")
            )
    elif kind == "retry":
        detail = (
            f"attempt {event.get('attempt')} failed ({event.get('in_a_row')} of {event.get('max_attempts')} "
            f"in a row): {event.get('reason')}"
        )
        out.append(_line(event, "retry", "bold yellow", detail))
    elif kind == "validation":
        passed = event.get("passed")
        style = "bold green" if passed else "bold red"
        verdict = "passed" if passed else "failed"
        out.append(_line(event, "validation", style, f"{event.get('kind')} {verdict}: {event.get('message')}"))
    elif kind == "limit":
        out.append(_line(event, "limit", "bold red", f"{event.get('limit')}: {event.get('message')}"))
    elif kind == "error":
        out.append(_line(event, "error", "bold red", str(event.get("message"))))
    elif kind == "final":
        reason = str(event.get("stop_reason"))
        style = "green" if reason == "answered" else "red"
        stats = (
            f"{reason}; {event.get('attempts')} attempts, {event.get('turns')} turns, "
            f"{event.get('code_runs')} code runs, {event.get('tool_calls')} tool calls, "
            f"{float(event.get('sandbox_time_s', 0.0)):.2f}s in the sandbox"
        )
        out.append(_line(event, "final", f"bold {style}", stats))
        out.append(Panel(Text(_clean(event.get("answer", ""))), title="answer", title_align="left", border_style=style))
    else:
        out.append(_line(event, str(kind), "dim", _clip(_json_preview(event, limit), limit)))
    return out


def _code_of(arguments: Any) -> str:
    decoded: Any = arguments
    if isinstance(arguments, str):
        try:
            decoded = msgspec.json.decode(arguments)
        except msgspec.DecodeError:
            return arguments
    if isinstance(decoded, dict):
        return str(decoded.get("code", ""))
    return ""


def render_transcript(events: Iterable[dict[str, Any]], console: Console | None = None, *, full: bool = False) -> None:
    """Print `events` (from `read_transcript`) as a timeline on `console` (stdout by default)."""
    console = console or Console(highlight=False)
    for event in events:
        for renderable in render_event(event, full=full):
            console.print(renderable)
