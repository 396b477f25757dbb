"""``wasmrun mcp``: serve the sandbox to MCP clients (stdio by default, or streamable HTTP).

    $ wasmrun mcp                                   # stdio, for desktop MCP clients
    $ wasmrun mcp --http 127.0.0.1:8000 --image scientific --tools myapp.tools:registry

The server lives in `wasmrun.integrations.mcp` (optional extra ``wasmrun[mcp]``);
this module only parses options, so ``wasmrun --help`` works without the SDK.
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal

import typer

from ._app import EXIT_USAGE, app
from ._options import FuelOption, MaxOutputOption, MemoryOption, build_limits, timeout_option


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"expected HOST:PORT with a port in 1..65535, got {text!r}", param_hint="'--http'")
    return host, int(port)


@app.command("mcp")
def mcp_command(
    http: Annotated[
        str | None,
        typer.Option(
            "--http", metavar="HOST:PORT", help="Serve streamable HTTP at http://HOST:PORT/mcp (default: stdio)."
        ),
    ] = None,
    image: Annotated[str, typer.Option("--image", help="Guest image: default or scientific.")] = "default",
    tools: Annotated[
        str | None,
        typer.Option(
            "--tools",
            metavar="MODULE:ATTR",
            help="A wasmrun.ToolRegistry to serve as MCP tools and as `import tools` (e.g. myapp.tools:registry).",
        ),
    ] = None,
    return_mode: Annotated[
        str, typer.Option("--return-mode", help="run_python_code reply format, as mcp-run-python: xml or json.")
    ] = "xml",
    max_sessions: Annotated[
        int, typer.Option("--max-sessions", min=0, help="Most live run_code_in_session sessions (0: none).")
    ] = 16,
    timeout: Annotated[float | None, timeout_option(per=" per run, and the most a client may ask for,")] = None,
    memory: MemoryOption = None,
    fuel: FuelOption = None,
    max_output: MaxOutputOption = None,
) -> None:
    """Serve run_code, mcp-run-python's run_python_code and a registry's tools over MCP.

    The limits given here are every run's default and the ceiling a client can ask for.
    """
    if return_mode not in ("xml", "json"):
        raise typer.BadParameter("must be xml or json", param_hint="'--return-mode'")
    mode: Literal["xml", "json"] = "json" if return_mode == "json" else "xml"
    limits = build_limits(timeout=timeout, fuel=fuel, memory=memory, max_output=max_output)
    address = _address(http) if http is not None else None
    try:
        from ..integrations.mcp import serve
    except ImportError as exc:
        typer.echo(f"wasmrun mcp needs the MCP SDK: pip install 'wasmrun[mcp]' ({exc})", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        if address is None:
            serve(image=image, limits=limits, tools=tools, return_mode=mode, max_sessions=max_sessions)
        else:
            serve(transport="http", host=address[0], port=address[1], image=image, limits=limits, tools=tools,
                  return_mode=mode, max_sessions=max_sessions)  # fmt: skip
    except ValueError as exc:
        print(f"wasmrun mcp: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        pass
