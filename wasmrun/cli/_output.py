"""How commands print: guest output as produced, errors as rich panels, results as JSON; no raw control codes."""

from __future__ import annotations

import re
import sys
from typing import IO, Final

import msgspec
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

from .._result import Result, RunError

# C0/C1 controls except \t and \n, bidi overrides/isolates ("Trojan Source"), lone surrogates.
_UNPRINTABLE: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: str) -> str:
    """Show control characters (e.g. terminal escapes in guest-made text) as ``\\x1b``-style escapes instead."""
    return _UNPRINTABLE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def write_raw(stream: IO[str], text: str) -> None:
    """Write `text` unchanged (UTF-8, whatever the locale), keeping order with earlier text writes."""
    if not text:
        return
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        buffer.write(text.encode("utf-8", "backslashreplace"))
        buffer.flush()
    else:
        stream.write(text)
        stream.flush()


def render_error(error: RunError) -> Panel:
    """A rich panel describing a failed run: kind, exception type, message, line and traceback."""
    parts: list[Text] = [Text(printable(error.type), style="bold red")]
    if error.message:
        parts.append(Text(printable(error.message)))
    if error.lineno is not None:
        parts.append(Text(f"line {error.lineno}", style="dim"))
    if error.traceback:
        parts.append(Text(""))
        parts.append(Text(printable(error.traceback.rstrip("\n")), style="dim"))
    return Panel(
        Group(*parts),
        title=f"[bold red]run failed: {error.kind}[/]",
        title_align="left",
        border_style="red",
        expand=False,
    )


def print_result(result: Result) -> None:
    """Print a run the human way: guest stdout/stderr as produced, the value like a REPL, then any error."""
    write_raw(sys.stdout, result.stdout)
    write_raw(sys.stderr, result.stderr)
    if result.value is not None:
        separator = "\n" if result.stdout and not result.stdout.endswith("\n") else ""
        write_raw(sys.stdout, f"{separator}{result.value}\n")
    if result.error is not None:
        if result.stderr and not result.stderr.endswith("\n"):
            write_raw(sys.stderr, "\n")
        Console(file=sys.stderr, highlight=False).print(render_error(result.error))


def print_json(result: Result) -> None:
    """Print ``result.to_dict()`` as one line of JSON on stdout (bytes as base64)."""
    write_raw(sys.stdout, msgspec.json.encode(result.to_dict()).decode("utf-8") + "\n")
