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
from typing import IO, Annotated, Any, Final

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
