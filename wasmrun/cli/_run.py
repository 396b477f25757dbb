"""``wasmrun run FILE``: run a Python file (or stdin) in a fresh sandbox."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from .._errors import WasmrunError
from .._sandbox import Sandbox
from ._app import EXIT_GUEST_FAILED, EXIT_HOST_ERROR, EXIT_OK, app
from ._options import FuelOption, MaxOutputOption, MemoryOption, TimeoutOption, build_limits
from ._output import print_json, print_result, printable


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
    timeout: TimeoutOption = None,
    memory: MemoryOption = None,
    fuel: FuelOption = None,
    max_output: MaxOutputOption = None,
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
            Text(f"wasmrun: could not run the code: {printable(str(exc))}", style="bold red")
        )
        raise typer.Exit(EXIT_HOST_ERROR) from None
    if json_output:
        print_json(result)
    else:
        print_result(result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_GUEST_FAILED)
