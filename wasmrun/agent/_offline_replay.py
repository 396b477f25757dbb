"""Offline replay of an agent transcript: re-run every recorded code run and compare (``wasmrun log replay``).

A transcript (`Transcript`, JSONL) records each ``run_code`` execution: the
code, what it printed, its value or error, the files it wrote, and every tool
call its code made, with the arguments and the result the host returned. A
replay runs each program again in a fresh sandbox with the same image, limits
and seed, and answers every tool call from the recording instead of the real
tool, so no database, network or API key is needed. It then reports, run by
run, whether stdout, stderr, value, error, files and tool calls match, with a
unified diff where they do not.

How tool calls are answered (`RecordedTools`): the guest gets the same
``import tools`` module as in the recording (the tool specs the transcript's
``start`` event holds: names, signatures, docstrings). The n-th call of a run
gets the n-th recorded call's result (or its error, as ``tools.ToolError``),
whatever it asks for; its arguments, as the guest sent them with the tool's
defaults filled in, are compared with the recorded (validated) arguments, and a
call of another tool, or one past the end of the recording, is reported as a
mismatch (the guest gets a ``ToolError``). Nothing is validated against the
real tool's types, since the real tool is not there.

What the comparison needs to be exact: code whose output depends on time,
randomness, hash order of objects (``id``) or directory order differs between
runs unless the conversation ran with ``Sandbox(deterministic=True)`` and the
replay uses the same seed (the transcript records both). Run durations and
fuel are never compared. The files' contents are not in the transcript, only
names and sizes, so those are compared.
"""

from __future__ import annotations

import base64
import collections
import difflib
import hashlib
import itertools
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .._limits import Limits
from .._result import Result
from .._sandbox import Sandbox
from .._session import Session
from ..tools import RunContext, ToolCallRecord, ToolRegistry
from ._jsonsafe import encode_json
from ._transcript import _clean, read_transcript

#: The fields of a run that a replay compares, in report order.
COMPARED = ("error", "stdout", "stderr", "value", "files", "tool_calls")


class RecordedRun(msgspec.Struct, frozen=True, kw_only=True):
    """One ``code_run`` event of a transcript and the tool calls its code made."""

    index: int
    attempt: int | None
    code: str
    stdout: str
    stderr: str
    value: str | None
    error: dict[str, Any] | None
    files: dict[str, int]
    timeout_s: float | None
    tool_calls: list[dict[str, Any]]
    session_id: str | None = None  # a stateful conversation's session (runs of one session share state)


class RunReplay(msgspec.Struct, frozen=True, kw_only=True):
    """How one replayed run compares with its recording.

    ``mismatches`` names the fields that differ (a subset of `COMPARED`);
    ``diffs`` holds a unified diff (recorded → replayed) for each of them.
    """

    index: int
    attempt: int | None
    matched: bool
    mismatches: list[str]
    diffs: dict[str, str]
    duration_s: float


class ReplayReport(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of replaying a transcript: one `RunReplay` per recorded code run."""

    transcript: str
    image: str
    deterministic: bool
    seed: int | None
    runs: list[RunReplay]

    @property
    def matched(self) -> bool:
        """True when every run matched its recording (and there was at least one)."""
        return bool(self.runs) and all(run.matched for run in self.runs)


class RecordedTools(ToolRegistry):
    """A registry that answers guest tool calls from a recording, in order, and checks their arguments.

    `specs` are the guest specs of the recorded registry (`ToolRegistry.guest_specs`).
    Call `expect` with a run's recorded calls before the run.
    """

    def __init__(self, specs: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(max_calls=1_000_000)
        self._specs = [dict(spec) for spec in specs]
        self._defaults: dict[str, dict[str, Any]] = {
            str(spec["name"]): {p["name"]: p["default"] for p in spec.get("params", []) if "default" in p}
            for spec in self._specs
        }
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._numbers = itertools.count(1)

    def guest_specs(self) -> list[dict[str, Any]]:
        """The recorded tools' specs: the guest's ``import tools`` looks as it did when recorded."""
        return [dict(spec) for spec in self._specs]

    def expect(self, calls: Iterable[Mapping[str, Any]]) -> None:
        """The recorded calls (``tool_call`` events) the next run should make, in order."""
        self._queue = collections.deque(dict(call) for call in calls)

    def dispatch(self, ctx: RunContext, run: Any, name: str, args: str) -> tuple[bool, str]:
        """Answer one guest call with the next recorded result; record what the guest asked for."""
        try:
            arguments: Any = json.loads(args)
        except ValueError:
            arguments = args
        if isinstance(arguments, dict):
            arguments = {**self._defaults.get(name, {}), **arguments}
        expected = self._queue.popleft() if self._queue else None
        if expected is None or expected.get("tool") != name:
            where = "no further call" if expected is None else f"a call of {expected.get('tool')!r}"
            message = f"replay: the recording has {where} here, not a call of {name!r}"
            fields: dict[str, Any] = {"decision": "allowed", "reason": None, "outcome": "error", "error": message}
        else:
            fields = {key: expected.get(key) for key in ("decision", "reason", "outcome", "result", "error")}
        record = ToolCallRecord(
            id=next(self._numbers),
            tool=name,
            source="guest",
            run_id=ctx.run_id,
            arguments=arguments,
            started_at=time.time(),
            duration_s=0.0,
            **fields,
        )
        with ctx.lock:
            ctx.records.append(record)
        if record.outcome == "ok":
            return True, encode_json(record.result).decode("utf-8")
        return False, str(record.error or record.outcome)


def recorded_runs(events: Sequence[Mapping[str, Any]]) -> list[RecordedRun]:
    """The code runs of a transcript, each with the guest tool calls that followed it."""
    runs: list[RecordedRun] = []
    calls: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
    for event in events:
        if event.get("type") == "tool_call" and event.get("source") == "guest" and event.get("code_run") is not None:
            calls[int(event["code_run"])].append(dict(event))
    for event in events:
        if event.get("type") != "code_run":
            continue
        index = int(event.get("index", len(runs) + 1))
        runs.append(
            RecordedRun(
                index=index,
                attempt=event.get("attempt"),
                code=str(event.get("code", "")),
                stdout=str(event.get("stdout") or ""),
                stderr=str(event.get("stderr") or ""),
                value=event.get("value"),
                error=event.get("error"),
                files={str(k): int(v) for k, v in (event.get("files") or {}).items()},
                timeout_s=event.get("timeout_s"),
                tool_calls=calls.get(index, []),
                session_id=event.get("session_id"),
            )
        )
    return runs


def _limits(start: Mapping[str, Any], timeout_s: float | None) -> Limits:
    recorded = start.get("run_limits") or {}
    known = set(Limits.__dataclass_fields__)
    options = {key: value for key, value in recorded.items() if key in known}
    if timeout_s is not None:
        options["timeout_s"] = timeout_s
    return Limits(**options)


def _lines(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.splitlines(keepends=True) or [""]
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=repr)
    return [line + "\n" for line in text.splitlines()]


def _call_view(call: Mapping[str, Any]) -> dict[str, Any]:
    """What is compared of a tool call: which tool, with what, and what the guest got back."""
    view = {"tool": call.get("tool"), "arguments": call.get("arguments"), "outcome": call.get("outcome")}
    if call.get("outcome") != "ok":
        view["error"] = call.get("error")
    return view


def _error_view(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {key: error.get(key) for key in ("kind", "type", "message", "lineno")}


def compare(recorded: RecordedRun, result: Result) -> tuple[list[str], dict[str, str]]:
    """The fields of `result` that differ from `recorded`, and a unified diff of each."""
    replayed_error = msgspec.structs.asdict(result.error) if result.error is not None else None
    pairs: dict[str, tuple[Any, Any]] = {
        "error": (_error_view(recorded.error), _error_view(replayed_error)),
        "stdout": (recorded.stdout, result.stdout),
        "stderr": (recorded.stderr, result.stderr),
        "value": (recorded.value, result.value),
        "files": (recorded.files, {name: len(data) for name, data in result.files.items()}),
        "tool_calls": (
            [_call_view(call) for call in recorded.tool_calls],
            [_call_view(msgspec.structs.asdict(call)) for call in result.tool_calls],
        ),
    }
    mismatches: list[str] = []
    diffs: dict[str, str] = {}
    for name in COMPARED:
        before, after = pairs[name]
        if before == after:
            continue
        mismatches.append(name)
        diff = difflib.unified_diff(
            _lines(before), _lines(after), fromfile=f"recorded {name}", tofile=f"replayed {name}", n=2
        )
        diffs[name] = "".join(line if line.endswith("\n") else line + "\n" for line in diff)
    return mismatches, diffs


def replay_transcript(
    transcript: str | Path | Sequence[Mapping[str, Any]],
    *,
    tools: ToolRegistry | None = None,
    files: Mapping[str, bytes | str] | None = None,
    image: str | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
) -> ReplayReport:
    """Re-execute every code run of `transcript` offline and compare each with its recording.

    The sandbox is configured from the transcript's ``start`` event (``sandbox``:
    image, determinism and seed, tool specs, input files); the arguments
    override it. `tools` supplies the tool specs (only their signatures are
    used, never their handlers) for a transcript that does not record them.
    `files` are the conversation's input files when the transcript does not
    hold their contents.

    Raises ``ValueError`` for a transcript with no code runs, or whose runs
    called tools when no tool specs are known.
    """
    events = read_transcript(transcript) if isinstance(transcript, (str, Path)) else list(transcript)
    start: Mapping[str, Any] = next((e for e in events if e.get("type") == "start"), {})
    setup: Mapping[str, Any] = start.get("sandbox") or {}
    runs = recorded_runs(events)
    if not runs:
        raise ValueError("the transcript records no code runs; nothing to replay")
    specs = setup.get("tool_specs")
    if tools is not None:
        specs = tools.guest_specs()
    if specs is None:
        if any(run.tool_calls for run in runs):
            raise ValueError(
                "the transcript's runs called tools but it does not record the tools' specs; "
                "pass the registry the conversation used (tools=..., or --tools MODULE:NAME)"
            )
        specs = []
    inputs = dict(files) if files is not None else _recorded_files(setup)
    chosen_image = image or str(setup.get("image") or "default")
    chosen_deterministic = bool(setup.get("deterministic", False)) if deterministic is None else deterministic
    chosen_seed = seed if seed is not None else setup.get("seed")
    registry = RecordedTools(specs)
    replays: list[RunReplay] = []
    sessions: dict[str, Session] = {}
    with Sandbox(
        image=chosen_image, tools=registry, seed=chosen_seed, deterministic=chosen_deterministic, prewarm=0
    ) as sandbox:
        for recorded in runs:
            registry.expect(recorded.tool_calls)
            limits = _limits(start, recorded.timeout_s)
            if recorded.session_id is None:
                # The agent always gives its runs a working directory (`RunCode` passes its files, maybe none).
                result = sandbox.run(recorded.code, limits=limits, files=inputs)
            else:  # a stateful conversation: the runs of one recorded session share one replayed session
                session = sessions.get(recorded.session_id)
                new = session is None
                if session is None:
                    session = sessions[recorded.session_id] = sandbox.session(limits=_limits(start, None))
                result = session.run(recorded.code, limits=limits, files=inputs if new else None)
            mismatches, diffs = compare(recorded, result)
            replays.append(
                RunReplay(
                    index=recorded.index,
                    attempt=recorded.attempt,
                    matched=not mismatches,
                    mismatches=mismatches,
                    diffs=diffs,
                    duration_s=result.stats.duration_s,
                )
            )
        for session in sessions.values():
            session.close()
    name = str(transcript) if isinstance(transcript, (str, Path)) else "<events>"
    return ReplayReport(
        transcript=name, image=chosen_image, deterministic=chosen_deterministic, seed=chosen_seed, runs=replays
    )


#: Input files are kept in the transcript (base64) up to this total size; larger ones only by digest.
MAX_RECORDED_FILE_BYTES = 1 << 20


def sandbox_setup(sandbox: Sandbox, files: Mapping[str, bytes | str]) -> dict[str, Any]:
    """What a replay needs to know about a conversation's sandbox: the ``sandbox`` field of its ``start`` event.

    Image, determinism and seed, the tools' guest specs (names, signatures,
    docstrings: what ``import tools`` showed) and the input files (name, size,
    SHA-256, and the contents while they total at most `MAX_RECORDED_FILE_BYTES`).
    """
    raw = {name: data.encode("utf-8") if isinstance(data, str) else bytes(data) for name, data in files.items()}
    inline = sum(len(data) for data in raw.values()) <= MAX_RECORDED_FILE_BYTES
    recorded: dict[str, dict[str, Any]] = {}
    for name, data in raw.items():
        entry: dict[str, Any] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if inline:
            entry["base64"] = base64.b64encode(data).decode("ascii")
        recorded[name] = entry
    return {
        "image": sandbox.image,
        "deterministic": sandbox.deterministic,
        "seed": sandbox.seed,
        "tool_specs": sandbox.tools.guest_specs() if sandbox.tools is not None else [],
        "files": recorded,
    }


def _recorded_files(setup: Mapping[str, Any]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, entry in (setup.get("files") or {}).items():
        data = entry.get("base64") if isinstance(entry, Mapping) else None
        if data is None:
            raise ValueError(
                f"the transcript does not hold the contents of input file {name!r}; "
                "pass the files (files=..., --files DIR)"
            )
        raw = base64.b64decode(data)
        digest = entry.get("sha256")
        if digest is not None and hashlib.sha256(raw).hexdigest() != digest:
            raise ValueError(f"input file {name!r} in the transcript does not match its recorded SHA-256")
        out[str(name)] = raw
    return out


def render_replay_report(report: ReplayReport, console: Any = None) -> None:
    """Print `report` with rich: a table of runs, then a diff for every mismatch."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    console = console or Console(highlight=False)
    mode = f"deterministic, seed {report.seed}" if report.deterministic else "not deterministic"
    table = Table("run", "attempt", "result", "differs in", title=f"replay of {_clean(report.transcript)}")
    for run in report.runs:
        status = Text("match", style="bold green") if run.matched else Text("MISMATCH", style="bold red")
        table.add_row(str(run.index), str(run.attempt or ""), status, ", ".join(run.mismatches))
    console.print(table)
    console.print(Text(f"image {report.image}, {mode}", style="dim"))
    for run in report.runs:
        for field, diff in run.diffs.items():
            console.print(
                Panel(
                    Syntax(_clean(diff), "diff", word_wrap=True),
                    title=f"run #{run.index}: {field}",
                    title_align="left",
                    border_style="red",
                )
            )
    matched = sum(run.matched for run in report.runs)
    style = "bold green" if report.matched else "bold red"
    console.print(Text(f"{matched} of {len(report.runs)} runs match their recording", style=style))
