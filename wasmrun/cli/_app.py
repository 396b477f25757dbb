"""The ``wasmrun`` command group, its exit statuses and ``--version``; the commands live in their own modules."""

from __future__ import annotations

from typing import Annotated, Final

import typer

from .. import __version__

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
