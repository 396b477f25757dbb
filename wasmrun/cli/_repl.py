"""``wasmrun repl``: an interactive Python session in the sandbox, in the terminal.

Each complete input (a line, or a block ended by an empty line) is one call of
one `wasmrun.Session`, with the same limit options as ``wasmrun run`` applied to
every call. Completeness is judged on the host with `codeop` (like the standard
``code.InteractiveConsole``); code the host's Python cannot parse is sent as is,
so the guest's own compiler reports it. Lines starting with ``:`` are commands
(``:help``).
"""

from __future__ import annotations

import codeop
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from .. import __version__
from .._errors import SessionDeadError, SnapshotError, WasmrunError
from .._limits import Limits
from .._sandbox import Sandbox
from .._session import Session
from ._app import EXIT_HOST_ERROR, EXIT_OK, EXIT_USAGE, app
from ._options import FuelOption, MaxOutputOption, MemoryOption, TimeoutOption, build_limits
from ._output import print_result, printable

PROMPT, MORE = ">>> ", "... "

HELP = """\
Commands:
  :help            this text
  :reset           start a new, empty session
  :save FILE       write the session's snapshot to FILE (wasmrun repl --restore FILE resumes it)
  :quit            leave (also Ctrl-D)
Each input runs in one sandboxed session: variables, imports and files in /work persist.
A call stopped by a limit (--timeout, --fuel, --max-output) is rolled back."""


def _needs_more(source: str) -> bool:
    """Whether `source` is an incomplete statement (more lines to come), like ``code.InteractiveConsole``."""
    try:
        return codeop.compile_command(source, "<input>", "single") is None
    except (SyntaxError, ValueError, OverflowError):
        return False  # the guest reports it (its Python may accept what the host's refuses)


class _Repl:
    def __init__(self, sandbox: Sandbox, limits: Limits, session: Session, err: Console) -> None:
        self.sandbox = sandbox
        self.limits = limits
        self.session = session
        self.err = err

    def note(self, text: str, style: str = "dim") -> None:
        self.err.print(Text(text, style=style))

    def command(self, line: str) -> bool:
        """Run a ``:command``; False to leave."""
        name, _, argument = line[1:].strip().partition(" ")
        if name in ("quit", "q", "exit"):
            return False
        if name == "help":
            self.note(HELP, style="")
        elif name == "reset":
            self.session.close()
            self.session = self.sandbox.session(limits=self.limits)
            self.note("started a new, empty session")
        elif name == "save" and argument.strip():
            try:
                data = self.session.snapshot()
                Path(argument.strip()).write_bytes(data)
            except (OSError, SessionDeadError) as exc:
                self.note(f"could not save: {printable(str(exc))}", style="bold red")
            else:
                self.note(f"saved {len(data):,} bytes to {argument.strip()}")
        else:
            self.note(f"unknown command {line.strip()!r}; :help lists them", style="bold red")
        return True

    def execute(self, source: str) -> None:
        if not self.session.alive:
            self.note(f"the session ended ({self.session.dead_reason}); starting a new, empty one", style="yellow")
            self.session.close()
            self.session = self.sandbox.session(limits=self.limits)
        result = self.session.run(source)
        print_result(result)
        sys.stdout.flush()
        if not self.session.alive:
            self.note(f"the session ended: {self.session.dead_reason}", style="bold yellow")
        elif result.error is not None and result.error.kind in ("timeout", "fuel", "output_limit"):
            self.note("this input was rolled back: the session is as it was before it", style="yellow")

    def loop(self) -> None:
        lines: list[str] = []
        while True:
            try:
                line = input(MORE if lines else PROMPT)
            except EOFError:
                if lines:
                    self.execute("\n".join(lines))
                sys.stdout.write("\n")
                return
            except KeyboardInterrupt:
                sys.stdout.write("\nKeyboardInterrupt\n")
                lines.clear()
                continue
            if not lines and line.startswith(":"):
                if not self.command(line):
                    return
                continue
            if not lines and not line.strip():
                continue
            lines.append(line)
            source = "\n".join(lines)
            if _needs_more(source):
                continue
            lines.clear()
            self.execute(source)


@app.command()
def repl(
    timeout: TimeoutOption = None,
    memory: MemoryOption = None,
    fuel: FuelOption = None,
    max_output: MaxOutputOption = None,
    image: Annotated[
        str, typer.Option("--image", help="Guest image: default (standard library) or scientific (numpy, pandas).")
    ] = "default",
    restore: Annotated[
        Path | None,
        typer.Option("--restore", metavar="FILE", help="Resume a session saved with :save.", show_default=False),
    ] = None,
) -> None:
    """An interactive Python session in the sandbox (the limits apply to each input)."""
    limits = build_limits(timeout=timeout, fuel=fuel, memory=memory, max_output=max_output)
    err = Console(file=sys.stderr, highlight=False)
    saved = None
    if restore is not None:
        try:
            saved = restore.read_bytes()
        except OSError as exc:
            err.print(Text(f"wasmrun repl: cannot read {restore}: {printable(str(exc))}", style="bold red"))
            raise typer.Exit(EXIT_USAGE) from None
    try:
        with Sandbox(limits=limits, image=image, prewarm=1) as sandbox:
            session = sandbox.restore(saved) if saved is not None else sandbox.session(limits=limits)
            err.print(
                Text(
                    f"wasmrun {__version__} repl, image {image!r}: each input runs in one sandboxed session "
                    f"({limits.timeout_s:g} s per input). :help for commands, Ctrl-D to leave.",
                    style="dim",
                )
            )
            shell = _Repl(sandbox, limits, session, err)
            try:
                shell.loop()
            finally:
                shell.session.close()
    except SnapshotError as exc:
        err.print(Text(f"wasmrun repl: cannot restore {restore}: {printable(str(exc))}", style="bold red"))
        raise typer.Exit(EXIT_USAGE) from None
    except (ValueError, WasmrunError) as exc:
        err.print(Text(f"wasmrun repl: {printable(str(exc))}", style="bold red"))
        raise typer.Exit(EXIT_HOST_ERROR) from None
    raise typer.Exit(EXIT_OK)
