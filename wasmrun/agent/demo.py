"""The seed example end to end: ``python -m wasmrun.agent.demo`` (also ``wasmrun agent demo``).

By default it is offline and needs no key, and uses the scientific image (pandas
+ matplotlib, installed on first use): the recorded model conversation
(`wasmrun.agent.seed.recorded_conversation`) is served by a local
OpenAI-compatible server on 127.0.0.1, and the real ``openai`` client, the agent
loop, the tools (over a freshly made SQLite sales database) and the sandbox all
run for real. ``--live`` talks to a real model instead (``OPENAI_API_KEY``,
optional ``OPENAI_BASE_URL`` and ``WASMRUN_MODEL``).

It writes the chart (and any other artifact) to ``--out`` (default: the current
directory) with the JSONL transcript next to it, and prints the generated code,
the tool-call audit and the answer.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console, Group
from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from ._agent import DEFAULT_MODEL
from ._jsonsafe import encode_json
from ._results import AgentResult
from ._transcript import _clean
from .seed import SEED_TASK, replay_seed, run_seed, sales_database, save_artifacts

TRANSCRIPT_NAME = "agent-demo-transcript.jsonl"


def print_code_runs(result: AgentResult, console: Console) -> None:
    """Each generated program in full, with how its run ended."""
    for run in result.code_runs:
        status = Text("ok", style="bold green") if run.ok else Text("failed", style="bold red")
        title = Text.assemble(f"code run #{run.index} (attempt {run.attempt}): ", status)
        parts: list[Syntax | Text] = [Syntax(_clean(run.code), "python", line_numbers=True, word_wrap=True)]
        error = run.result.error
        if error is not None:
            parts.append(Text(_clean(f"{error.kind}: {error.type}: {error.message}"), style="red"))
        elif run.result.stdout:
            parts.append(Text(_clean(run.result.stdout.rstrip()), style="dim"))
        if run.result.files:
            names = ", ".join(f"{_clean(n)} ({len(d):,} bytes)" for n, d in run.result.files.items())
            parts.append(Text(f"files: {names}", style="green"))
        console.print(Panel(Group(*parts), title=title, title_align="left", border_style="magenta"))


def print_audit(result: AgentResult, console: Console) -> None:
    """The tool-call audit: every call of a registered tool, by the model or by guest code."""
    table = Table("#", "caller", "tool", "arguments", "decision", "outcome", "ms", title="tool-call audit")
    table.columns[3].overflow = "fold"
    run_of = {id(record): run.index for run in result.code_runs for record in run.tool_calls}
    for number, record in enumerate(result.tool_calls, start=1):
        args = encode_json(record.arguments).decode()
        shown = args if len(args) <= 120 else args[:117] + "..."
        source = "model" if record.source == "model" else f"code run #{run_of.get(id(record), '?')}"
        style = "green" if record.outcome == "ok" else "red"
        table.add_row(
            str(number),
            source,
            _clean(record.tool),
            Text(_clean(shown)),
            record.decision,
            Text(record.outcome, style=style),
            f"{record.duration_s * 1000:.1f}",
        )
    console.print(table)


def print_report(result: AgentResult, written: Sequence[Path], console: Console) -> None:
    """Generated code, audit, answer, artifacts and where the transcript is."""
    console.rule("[bold]Generated code")
    print_code_runs(result, console)
    console.rule("[bold]Tool calls")
    print_audit(result, console)
    console.rule("[bold]Answer")
    style = "green" if result.ok else "red"
    console.print(Panel(Markdown(_clean(result.answer)), border_style=style))
    console.print(
        f"stop reason: {result.stop_reason}; attempts: {result.attempts}; turns: {result.turns}; "
        f"code runs: {len(result.code_runs)}; tool calls: {len(result.tool_calls)}; "
        f"sandbox time: {result.sandbox_time_s * 1000:.0f} ms",
        markup=False,
    )
    for path in written:
        console.print(Text(f"wrote {path}", style="bold green"))
    if result.transcript_path is not None:
        path = result.transcript_path
        console.print(Text(f"transcript: {path}  (wasmrun log show {path}; re-run offline: wasmrun log replay {path})"))


def run_demo(
    *,
    out_dir: str | Path = ".",
    live: bool = False,
    model: str | None = None,
    transcript: str | Path | None = None,
    console: Console | None = None,
    image: str = "scientific",
    stateful: bool = False,
    deterministic: bool = True,
    seed: int = 0,
) -> AgentResult:
    """Run the seed example (replayed unless `live`), save its artifacts to `out_dir` and print a report.

    `stateful`: the agent's ``run_code`` keeps one session for the conversation. The code runs are
    deterministic by default (`wasmrun.Sandbox(deterministic=True)`, `seed`), and the transcript records
    it, so ``wasmrun log replay TRANSCRIPT`` reproduces every run exactly, offline.
    """
    console = console or Console(highlight=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    transcript_path = Path(transcript) if transcript is not None else out / TRANSCRIPT_NAME
    transcript_path.unlink(missing_ok=True)
    console.rule("[bold]Task")
    console.print(SEED_TASK, markup=False)
    with sales_database() as db_path:
        if live:
            import openai

            chosen = model or os.environ.get("WASMRUN_MODEL") or DEFAULT_MODEL
            client = openai.OpenAI()
            console.print(f"model: {chosen} at {client.base_url} (live)", markup=False)
            result = run_seed(
                client,
                chosen,
                db_path=db_path,
                transcript=transcript_path,
                image=image,
                stateful=stateful,
                deterministic=deterministic,
                seed=seed,
            )
        else:
            console.print(
                "model: the recorded conversation, replayed by a local OpenAI-compatible server (offline, no key)",
                markup=False,
            )
            result, server = replay_seed(
                db_path=db_path,
                transcript=transcript_path,
                image=image,
                stateful=stateful,
                deterministic=deterministic,
                seed=seed,
            )
            if server.errors:
                console.print(Text(f"replay server errors: {server.errors}", style="red"))
    written = save_artifacts(result.files, out)
    print_report(result, written, console)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (0 when the answer was accepted)."""
    parser = argparse.ArgumentParser(prog="python -m wasmrun.agent.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".", help="directory for the chart and the transcript (default: .)")
    parser.add_argument("--live", action="store_true", help="use a real model (OPENAI_API_KEY, OPENAI_BASE_URL)")
    parser.add_argument(
        "--image",
        choices=["scientific", "default"],
        default="scientific",
        help="sandbox image: scientific (pandas + matplotlib, PNG chart; installed on first use) or default "
        "(standard library only, SVG chart)",
    )
    parser.add_argument("--model", default=None, help=f"model for --live (default: $WASMRUN_MODEL or {DEFAULT_MODEL})")
    parser.add_argument("--transcript", default=None, help=f"transcript file (default: OUT/{TRANSCRIPT_NAME})")
    parser.add_argument(
        "--stateful", action="store_true", help="run_code keeps one session (variables persist between calls)"
    )
    parser.add_argument(
        "--not-deterministic",
        action="store_true",
        help="real clocks and entropy in the sandbox (by default the code runs are deterministic, seed 0, "
        "so `wasmrun log replay` of the transcript matches exactly)",
    )
    args = parser.parse_args(argv)
    if args.live and not os.environ.get("OPENAI_API_KEY"):
        print("--live needs OPENAI_API_KEY (and optionally OPENAI_BASE_URL, WASMRUN_MODEL)", file=sys.stderr)
        return 2
    result = run_demo(
        out_dir=args.out,
        live=args.live,
        model=args.model,
        transcript=args.transcript,
        image=args.image,
        stateful=args.stateful,
        deterministic=not args.not_deterministic,
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
