"""``wasmrun log replay FILE``: re-run a transcript's code offline and compare with the recording."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.text import Text

from ._agent import TranscriptFile, log_app
from ._app import EXIT_GUEST_FAILED, EXIT_HOST_ERROR, EXIT_OK, EXIT_USAGE
from ._output import printable, write_raw


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    Console(file=sys.stderr, highlight=False).print(
        Text(f"wasmrun log replay: {printable(message)}", style="bold red"), soft_wrap=True
    )
    return typer.Exit(code)


def _load_registry(spec: str) -> Any:
    """`MODULE:NAME`: a `ToolRegistry`, or a callable without arguments that returns one."""
    from ..tools import ToolRegistry

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--tools must be MODULE:NAME, got {spec!r}")
    value = getattr(importlib.import_module(module_name), attr)
    if callable(value) and not isinstance(value, ToolRegistry):
        value = value()
    if not isinstance(value, ToolRegistry):
        raise ValueError(f"{spec} is not a wasmrun.ToolRegistry (or a function returning one)")
    return value


def _read_files(directory: Path) -> dict[str, bytes]:
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@log_app.command("replay")
def log_replay(
    file: TranscriptFile,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    tools: Annotated[
        str | None,
        typer.Option(
            "--tools",
            metavar="MODULE:NAME",
            help="The registry the conversation used, for its tool signatures only (handlers are never called); "
            "needed only for transcripts that do not record the tool specs.",
        ),
    ] = None,
    files: Annotated[
        Path | None,
        typer.Option(
            "--files",
            metavar="DIR",
            help="The conversation's input files, when the transcript holds only their digests.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    image: Annotated[str | None, typer.Option("--image", help="Override the recorded image.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Override the recorded seed.")] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option("--deterministic/--not-deterministic", help="Override the recorded determinism switch."),
    ] = None,
) -> None:
    """Re-run every code run of a transcript offline, each tool call answered from the recording.

    Needs no database, network or API key. Reports per run whether stdout,
    stderr, value, error, files and tool calls match the recording, with a diff
    where they do not. Exit status: 0 when every run matches, 1 on a mismatch,
    2 for an unusable transcript or option.
    """
    from ..agent._offline_replay import render_replay_report, replay_transcript

    try:
        registry = _load_registry(tools) if tools is not None else None
        inputs = _read_files(files) if files is not None else None
        report = replay_transcript(
            file, tools=registry, files=inputs, image=image, seed=seed, deterministic=deterministic
        )
    except (OSError, ValueError, TypeError, ImportError, AttributeError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - e.g. the image cannot be loaded: report it, never a traceback
        raise _fail(f"{type(exc).__name__}: {exc}", EXIT_HOST_ERROR) from None
    if as_json:
        payload = {**msgspec.structs.asdict(report), "matched": report.matched}
        write_raw(sys.stdout, msgspec.json.encode(payload).decode("utf-8") + "\n")
    else:
        render_replay_report(report, Console(highlight=False))
    raise typer.Exit(EXIT_OK if report.matched else EXIT_GUEST_FAILED)
