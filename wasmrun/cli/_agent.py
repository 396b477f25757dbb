"""``wasmrun log ...`` (agent transcripts) and ``wasmrun agent ...`` (the demo, and asking a real model)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from ._app import EXIT_GUEST_FAILED, EXIT_HOST_ERROR, EXIT_OK, EXIT_USAGE, app
from ._options import input_file_argument
from ._output import printable

log_app = typer.Typer(name="log", no_args_is_help=True, help="Read agent transcripts (JSONL, see wasmrun.agent).")
app.add_typer(log_app, name="log")

# The FILE argument of every ``wasmrun log`` command.
TranscriptFile = Annotated[Path, input_file_argument("FILE", "A JSONL transcript written by wasmrun.agent.")]


@log_app.command("show")
def log_show(
    file: TranscriptFile,
    full: Annotated[
        bool,
        typer.Option("--full", help="Also show the system prompt, tool results and long outputs in full."),
    ] = False,
) -> None:
    """Print an agent transcript as a readable timeline: model turns, code, tool calls, retries, validation."""
    from ..agent._transcript import read_transcript, render_transcript

    try:
        events = read_transcript(file)
    except (OSError, ValueError) as exc:
        Console(file=sys.stderr, highlight=False).print(
            Text(f"wasmrun log show: {printable(str(exc))}", style="bold red"), soft_wrap=True
        )
        raise typer.Exit(EXIT_USAGE) from None
    render_transcript(events, Console(highlight=False), full=full)


agent_app = typer.Typer(
    name="agent", no_args_is_help=True, help="A model that calls tools and writes code that runs in the sandbox."
)
app.add_typer(agent_app, name="agent")


def _require_api_key(command: str) -> None:
    import os

    if not os.environ.get("OPENAI_API_KEY"):
        Console(file=sys.stderr, highlight=False).print(
            Text(
                f"wasmrun {command}: needs OPENAI_API_KEY (and optionally OPENAI_BASE_URL, WASMRUN_MODEL)",
                style="bold red",
            )
        )
        raise typer.Exit(EXIT_USAGE)


@agent_app.command("demo")
def agent_demo(
    out: Annotated[Path, typer.Option("--out", help="Directory for the chart and the transcript.")] = Path("."),
    live: Annotated[
        bool,
        typer.Option("--live", help="Use a real model (OPENAI_API_KEY, OPENAI_BASE_URL) instead of the recording."),
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", help="Model for --live.", show_default="$WASMRUN_MODEL or gpt-4.1-mini")
    ] = None,
    transcript: Annotated[
        Path | None,
        typer.Option("--transcript", help="Transcript file.", show_default="OUT/agent-demo-transcript.jsonl"),
    ] = None,
    image: Annotated[
        str,
        typer.Option(
            "--image",
            help="Sandbox image: scientific (pandas + matplotlib, PNG chart) or default (standard library, SVG).",
        ),
    ] = "scientific",
    stateful: Annotated[
        bool, typer.Option("--stateful", help="run_code keeps one session: variables persist between calls.")
    ] = False,
) -> None:
    """The seed example end to end: Q3 sales by region as a chart, with tools and code (offline by default)."""
    if live:
        _require_api_key("agent demo --live")
    import openai

    from ..agent.demo import run_demo

    try:
        result = run_demo(out_dir=out, live=live, model=model, transcript=transcript, image=image, stateful=stateful)
    except openai.APIError as exc:
        Console(file=sys.stderr, highlight=False).print(
            Text(f"wasmrun agent demo: the model API failed: {printable(str(exc))}", style="bold red")
        )
        raise typer.Exit(EXIT_HOST_ERROR) from None
    raise typer.Exit(EXIT_OK if result.ok else EXIT_GUEST_FAILED)


@agent_app.command("ask")
def agent_ask(
    task: Annotated[str, typer.Argument(metavar="TASK", help="What to do, in plain words.", show_default=False)],
    model: Annotated[
        str | None, typer.Option("--model", help="The model.", show_default="$WASMRUN_MODEL or gpt-4.1-mini")
    ] = None,
    sales: Annotated[
        bool, typer.Option("--sales", help="Give the model the seed's sales tools, over a fresh demo database.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Directory for the files the code writes.")] = Path("."),
    transcript: Annotated[Path | None, typer.Option("--transcript", help="Write a JSONL transcript here.")] = None,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, help="Failed tries in a row allowed.")] = 3,
    review: Annotated[bool, typer.Option("--review", help="Let the model review code and output first.")] = False,
) -> None:
    """Ask a real model (OPENAI_API_KEY, optional OPENAI_BASE_URL) to do TASK with run_code (and tools)."""
    _require_api_key("agent ask")
    import contextlib

    import openai

    from ..agent import Agent, AgentLimits
    from ..agent.demo import print_report
    from ..agent.seed import SEED_INSTRUCTIONS, chart_validator, sales_database, save_artifacts, seed_registry

    console = Console(highlight=False)
    with contextlib.ExitStack() as stack:
        options: dict[str, Any] = {}
        if sales:
            db_path = stack.enter_context(sales_database())
            options = {"tools": seed_registry(db_path), "instructions": SEED_INSTRUCTIONS}
            if "chart" in task.lower():
                options["validator"] = chart_validator
        agent = stack.enter_context(
            Agent.from_env(model=model, agent_limits=AgentLimits(max_attempts=max_attempts), review=review, **options)
        )
        try:
            result = agent.run(task, transcript=transcript)
        except openai.APIError as exc:
            Console(file=sys.stderr, highlight=False).print(
                Text(f"wasmrun agent ask: the model API failed: {printable(str(exc))}", style="bold red")
            )
            raise typer.Exit(EXIT_HOST_ERROR) from None
    written = save_artifacts(result.files, out) if result.files else []
    print_report(result, written, console)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_GUEST_FAILED)
