"""Running a `SandboxServer`: `serve` (what ``wasmrun mcp`` calls) and `load_registry` for ``--tools``."""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Literal

import anyio

from wasmrun import Limits, ToolRegistry

from . import _run_python
from ._server import MAX_REPLY_CHARS, SandboxServer
from ._sessions import MAX_SESSIONS


def load_registry(spec: str) -> ToolRegistry:
    """The `wasmrun.ToolRegistry` named by ``"package.module:attribute"``.

    The attribute may be a registry or a function of no arguments that returns one.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"--tools expects 'module:attribute' (e.g. 'myapp.tools:registry'), got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--tools {spec}: cannot import {module_name!r}: {exc}") from exc
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"--tools {spec}: module {module_name!r} has no attribute {attribute!r}") from None
    if callable(value) and not isinstance(value, ToolRegistry):
        value = value()
    if not isinstance(value, ToolRegistry):
        raise ValueError(f"--tools {spec}: expected a wasmrun.ToolRegistry, got {type(value).__name__}")
    return value


Transport = Literal["stdio", "http"]


def serve(
    *,
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    image: str = "default",
    limits: Limits | None = None,
    tools: ToolRegistry | str | None = None,
    return_mode: _run_python.ReturnMode = "xml",
    max_reply_chars: int = MAX_REPLY_CHARS,
    max_sessions: int = MAX_SESSIONS,
) -> None:
    """Run a `SandboxServer` until the client disconnects (stdio) or the process is stopped (HTTP).

    `tools` may be a registry or a ``"module:attribute"`` spec (see `load_registry`).
    This is what ``wasmrun mcp`` calls.
    """
    if transport not in ("stdio", "http"):
        raise ValueError(f"transport must be 'stdio' or 'http', got {transport!r}")
    registry = load_registry(tools) if isinstance(tools, str) else tools
    if transport == "http" and host not in ("127.0.0.1", "localhost", "::1"):
        # No authentication is configured: anyone who reaches the port can run code and call the tools.
        print(
            f"wasmrun mcp: serving on {host}:{port} without authentication; anyone who can reach it can run "
            "code and call the registry's tools. Put it behind an authenticating proxy, or bind 127.0.0.1.",
            file=sys.stderr,
        )
    with SandboxServer(
        image=image,
        limits=limits,
        tools=registry,
        return_mode=return_mode,
        max_reply_chars=max_reply_chars,
        max_sessions=max_sessions,
    ) as server:
        if transport == "stdio":
            anyio.run(server.run_stdio)
        else:
            anyio.run(functools.partial(server.run_http, host, port))
