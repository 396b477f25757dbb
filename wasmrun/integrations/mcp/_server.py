"""The wasmrun MCP server: ``run_code``, the mcp-run-python drop-in and a registry's tools, over MCP.

Built on the official SDK's low-level ``mcp.server.Server`` (mcp 2.x) rather
than ``MCPServer`` (the former FastMCP): ``MCPServer`` derives every tool's
schema from a Python signature and validates with its own models, but a
registry tool must keep the schema and the validation pipeline of the
`wasmrun.ToolRegistry` (validation, policy, budgets, audit), so each tool is
listed with an explicit JSON schema and every call goes through
``registry.call``.

Tools:

* ``run_code(code, files?, limits?)``: one fresh sandbox run. Replies with a
  JSON text block and the same object as structured content (``ok``, ``stdout``,
  ``stderr``, ``value``, ``error`` with ``kind``/``type``/``message``, the files the
  code wrote, ``tool_calls`` records, the ``limits`` applied and ``notes``), plus
  every PNG/JPEG/GIF the run produced (matplotlib figures in the scientific
  image, image files the code wrote) as MCP image content. A failed run is a
  tool result with ``isError: true``, never a protocol error.
* ``run_python_code(python_code, global_variables?)``: pydantic's
  mcp-run-python's tool with its reply (see `wasmrun.integrations.mcp._run_python`).
* With a registry, each registry tool as a direct MCP tool (its registry JSON
  schema; calls through ``registry.call``, so ``source="model"`` records), and
  reachable as ``import tools`` inside both code tools. A reply carries the
  result as JSON text and, as the SDK does for return values, as structured
  content ``{"result": value}`` with an output schema from the return annotation.

Limits: the server's `wasmrun.Limits` are the default and the ceiling of every
run; a client may ask for lower ones, and a value above the ceiling is lowered
to it with a note in the reply. Text fields of a reply are cut to
``max_reply_chars`` with a marker.

Each MCP session (a stdio connection, an HTTP ``Mcp-Session-Id``) has one
`wasmrun.RunContext` for its direct tool calls, so per-run budgets of the
registry hold across a session's calls. Code runs do not keep state between
calls (sessions of wasmrun are not mapped yet).
"""

from __future__ import annotations

import base64
import functools
import importlib
import logging
import sys
import weakref
from collections.abc import Sequence
from typing import Any, Literal

import anyio
import mcp_types as types
import msgspec
import pydantic
from mcp.server import Server
from mcp.server.context import ServerRequestContext

import wasmrun
from wasmrun import Limits, Result, RunContext, Sandbox, ToolCallRecord, ToolRegistry
from wasmrun.agent import truncate

from . import _run_python
from ._arguments import (
    LimitsRequest,
    RunCodeRequest,
    RunPythonCodeRequest,
    apply_limits,
    explain,
    limits_summary,
)

logger = logging.getLogger("wasmrun.mcp")

RUN_CODE = "run_code"
RUN_PYTHON_CODE = "run_python_code"

MAX_REPLY_CHARS = 20_000
"""Default cap on each text field of a reply (stdout, stderr, value, traceback)."""

MAX_IMAGES = 16
"""Most images one reply carries; further ones are listed by name only."""

MAX_RECORDS = 50
"""Most tool-call records one ``run_code`` reply lists in full."""

_RECORD_RESULT_CHARS = 2_000

_ENVIRONMENTS = {
    "default": "CPython 3.14 with its standard library only (no third-party packages).",
    "scientific": (
        "CPython 3.15 with numpy, pandas, scipy, matplotlib, scikit-learn and statsmodels; "
        "matplotlib figures come back as images."
    ),
}

_IMAGE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


class ErrorInfo(pydantic.BaseModel):
    """Why a run failed."""

    kind: str = pydantic.Field(description="timeout, fuel, memory, output_limit, exception, syntax, tool or internal")
    type: str
    message: str
    lineno: int | None = None
    traceback: str = ""


class RunCodeReply(pydantic.BaseModel):
    """The structured content of a ``run_code`` reply."""

    ok: bool
    stdout: str
    stderr: str
    value: str | None = pydantic.Field(description="repr of the last expression, like a REPL")
    error: ErrorInfo | None
    files: dict[str, int] = pydantic.Field(description="files the code wrote: name -> size in bytes")
    images: list[str] = pydantic.Field(description="names of the images sent as image content")
    tool_calls: list[dict[str, Any]] = pydantic.Field(description="records of the code's tool calls")
    tool_calls_total: int
    limits: dict[str, float | int] = pydantic.Field(description="the limits the run had")
    duration_s: float
    notes: list[str]


class SandboxServer:
    """An MCP server that runs code in a `wasmrun.Sandbox` and serves a registry's tools.

    >>> server = SandboxServer(limits=Limits(timeout_s=5), tools=registry)
    >>> async with mcp.Client(server.server) as client:     # in-process, e.g. in tests
    ...     reply = await client.call_tool("run_code", {"code": "6 * 7"})
    >>> server.close()

    ``image``: ``"default"`` or ``"scientific"``. ``limits``: default and ceiling
    of every run. ``tools``: a registry exposed as MCP tools and as ``import
    tools``. ``return_mode``: the ``run_python_code`` reply format (mcp-run-python's
    ``xml`` default, or ``json``). Use `serve` to run one over stdio or HTTP.
    """

    def __init__(
        self,
        *,
        image: str = "default",
        limits: Limits | None = None,
        tools: ToolRegistry | None = None,
        return_mode: _run_python.ReturnMode = "xml",
        max_reply_chars: int = MAX_REPLY_CHARS,
        prewarm: int | None = None,
        name: str = "wasmrun",
    ) -> None:
        if return_mode not in ("xml", "json"):
            raise ValueError(f"return_mode must be 'xml' or 'json', got {return_mode!r}")
        if isinstance(max_reply_chars, bool) or not isinstance(max_reply_chars, int) or max_reply_chars < 100:
            raise ValueError(f"max_reply_chars must be an int >= 100, got {max_reply_chars!r}")
        self.registry = tools
        self.return_mode: _run_python.ReturnMode = return_mode
        self.max_reply_chars = max_reply_chars
        self.sandbox = Sandbox(limits=limits, tools=tools, image=image, prewarm=prewarm)
        self.limits = self.sandbox.limits
        self.image = image
        reserved = {RUN_CODE, RUN_PYTHON_CODE} & set(tools.tools if tools is not None else ())
        if reserved:
            raise ValueError(f"registry tool names {sorted(reserved)} clash with the server's own tools; rename them")
        self._contexts: weakref.WeakKeyDictionary[Any, RunContext] = weakref.WeakKeyDictionary()
        self._structured: set[str] = set()
        self._tool_list = self._define_tools()
        self.server: Server[Any] = Server(
            name,
            version=wasmrun.__version__,
            instructions=(
                "Call run_code with a complete Python program; each call runs in a fresh, isolated sandbox "
                "(no network, no host files). Nothing persists between calls."
            ),
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )

    def close(self) -> None:
        """Release the sandbox's pre-warmed instances; the server refuses further runs."""
        self.sandbox.close()

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tool definitions ---------------------------------------------------------
    def _define_tools(self) -> list[types.Tool]:
        names = sorted(self.registry.tools) if self.registry is not None else []
        environment = _ENVIRONMENTS.get(self.image, f"The {self.image!r} image.")
        tools_text = (
            f" `import tools` to call the host's tools as Python functions with keyword arguments: {', '.join(names)}"
            " (same arguments as the MCP tools of the same name); a failed call raises tools.ToolError."
            if names
            else ""
        )
        summary = limits_summary(self.limits)
        run_code = types.Tool(
            name=RUN_CODE,
            title="Run Python code in a wasmrun sandbox",
            description=(
                "Run a Python program in a fresh, isolated WebAssembly sandbox and get back what it printed "
                "(stdout, stderr), the repr of its last expression, the files it wrote, charts as images, or the "
                f"error (kind, type, message, traceback). {environment} No network and no host filesystem; nothing "
                f"persists between calls. Limits: at most {summary['timeout_s']:g} s and {summary['memory_mb']} MiB "
                f"per run (ask for less with `limits`).{tools_text}"
            ),
            input_schema=RunCodeRequest.model_json_schema(),
            output_schema=RunCodeReply.model_json_schema(),
            annotations=types.ToolAnnotations(read_only_hint=not names, open_world_hint=bool(names)),
        )
        run_python = types.Tool(
            name=RUN_PYTHON_CODE,
            title="Run Python code",
            description=(
                "Tool to execute Python code and return stdout, stderr, and return value.\n\n"
                "The value on the last line will be returned as the return value.\n\n"
                f"{environment}{tools_text}"
            ),
            input_schema=RunPythonCodeRequest.model_json_schema(),
            annotations=types.ToolAnnotations(read_only_hint=not names, open_world_hint=bool(names)),
        )
        direct = []
        if self.registry is not None:
            for tool in self.registry.tools.values():
                schema = {k: v for k, v in tool.signature.schema.items() if k != "title"}
                output = _wrapped_output_schema(tool.signature.returns)
                if output is not None:
                    self._structured.add(tool.name)
                direct.append(
                    types.Tool(name=tool.name, description=tool.description, input_schema=schema, output_schema=output)
                )
        return [run_code, run_python, *direct]

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self._tool_list)

    # -- calls --------------------------------------------------------------------
    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = dict(params.arguments or {})
        if params.name == RUN_CODE:
            return await self.run_code(arguments)
        if params.name == RUN_PYTHON_CODE:
            return await self.run_python_code(arguments)
        if self.registry is not None and params.name in self.registry.tools:
            return await self.call_registry_tool(params.name, arguments, self._context_for(ctx))
        known = ", ".join(tool.name for tool in self._tool_list)
        return _error_result(f"no tool named {params.name!r} (available: {known})")

    def _context_for(self, ctx: ServerRequestContext[Any]) -> RunContext:
        """One `RunContext` per MCP session, so the registry's budgets span the session's direct calls."""
        try:
            return self._contexts.setdefault(ctx.session, RunContext())
        except TypeError:  # a session object that cannot be weakly referenced: budgets per call
            return RunContext()

    async def run_code(self, arguments: dict[str, Any]) -> types.CallToolResult:
        """Handle one ``run_code`` call (validated here: the arguments are untrusted)."""
        try:
            request = RunCodeRequest.model_validate(arguments)
        except pydantic.ValidationError as exc:
            return _error_result(f"run_code: invalid arguments: {explain(exc)}")
        applied = apply_limits(self.limits, request.limits)
        result = await self._run(request.code, applied.limits, request.files)
        reply, images = self._reply(result, applied.limits, applied.notes)
        content: list[types.ContentBlock] = [types.TextContent(type="text", text=reply.model_dump_json())]
        content += images
        return types.CallToolResult(
            content=content, structured_content=reply.model_dump(mode="json"), is_error=not result.ok
        )

    async def run_python_code(self, arguments: dict[str, Any]) -> types.CallToolResult:
        """Handle one ``run_python_code`` call, answering the way mcp-run-python does."""
        try:
            request = RunPythonCodeRequest.model_validate(arguments)
        except pydantic.ValidationError as exc:
            return _error_result(f"run_python_code: invalid arguments: {explain(exc)}")
        preamble = _run_python.globals_preamble(request.global_variables)
        result = await self._run(preamble + request.python_code, self.limits, None)
        text = _run_python.reply(result, self.return_mode, line_offset=preamble.count("\n"))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    async def call_registry_tool(
        self, name: str, arguments: dict[str, Any], context: RunContext
    ) -> types.CallToolResult:
        """A direct call of a registry tool, through ``registry.call`` (validation, policy, budgets, audit)."""
        assert self.registry is not None
        record = await anyio.to_thread.run_sync(functools.partial(self.registry.call, name, arguments, context=context))
        if record.outcome != "ok":
            return _error_result(record.error or f"{name}: {record.outcome}")
        text = msgspec.json.encode(record.result).decode("utf-8")
        structured = {"result": record.result} if name in self._structured else None
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=structured)

    async def _run(self, code: str, limits: Limits, files: dict[str, str] | None) -> Result:
        # Sandbox.run blocks (the guest runs on this thread); the event loop keeps serving other requests.
        # A cancelled request cannot stop its run early: the run ends at its own limits.
        return await anyio.to_thread.run_sync(functools.partial(self.sandbox.run, code, limits=limits, files=files))

    def _reply(
        self, result: Result, limits: Limits, notes: Sequence[str]
    ) -> tuple[RunCodeReply, list[types.ContentBlock]]:
        cap = self.max_reply_chars
        error = None
        if result.error is not None:
            e = result.error
            error = ErrorInfo(
                kind=e.kind,
                type=e.type,
                message=truncate(e.message, cap),
                lineno=e.lineno,
                traceback=truncate(e.traceback, cap),
            )
        candidates = [*result.artifacts.items(), *result.files.items()]
        images: list[types.ContentBlock] = []
        image_names: list[str] = []
        extra_notes = list(notes)
        for name, data in candidates:
            mime = _image_type(data)
            if mime is None:
                continue
            if len(images) >= MAX_IMAGES:
                extra_notes.append(f"image {name} not sent: at most {MAX_IMAGES} images per reply")
                continue
            images.append(types.ImageContent(type="image", data=base64.b64encode(data).decode("ascii"), mime_type=mime))
            image_names.append(name)
        for text, label in ((result.stdout, "stdout"), (result.stderr, "stderr")):
            if len(text) > cap:
                extra_notes.append(f"{label} is {len(text):,} characters; the reply keeps {cap:,} (head and tail)")
        reply = RunCodeReply(
            ok=result.ok,
            stdout=truncate(result.stdout, cap),
            stderr=truncate(result.stderr, cap),
            value=truncate(result.value, cap) if result.value is not None else None,
            error=error,
            files={name: len(data) for name, data in result.files.items()},
            images=image_names,
            tool_calls=[_record(r) for r in result.tool_calls[:MAX_RECORDS]],
            tool_calls_total=len(result.tool_calls),
            limits=dict(limits_summary(limits)),
            duration_s=round(result.stats.duration_s, 6),
            notes=extra_notes,
        )
        return reply, images

    # -- transports -------------------------------------------------------------------
    async def run_stdio(self) -> None:
        """Serve one client over this process's stdin/stdout until it disconnects."""
        from mcp.server.stdio import stdio_server

        async with stdio_server() as (read_stream, write_stream):
            await self.server.run(read_stream, write_stream, self.server.create_initialization_options())

    async def run_http(self, host: str = "127.0.0.1", port: int = 8000, *, path: str = "/mcp") -> None:
        """Serve streamable HTTP at ``http://host:port/mcp`` until cancelled (uvicorn, as the SDK does)."""
        import uvicorn

        app = self.server.streamable_http_app(streamable_http_path=path, host=host)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        await uvicorn.Server(config).serve()


def _wrapped_output_schema(returns: pydantic.TypeAdapter[Any]) -> dict[str, Any] | None:
    """A registry tool's return type as an MCP output schema: ``{"result": <value>}``, as the SDK wraps values.

    None when the return type has no JSON schema; such a tool replies with text only.
    """
    try:
        schema = returns.json_schema(mode="serialization")
    except pydantic.PydanticUserError:
        return None
    defs = schema.pop("$defs", None)  # references point at the root: keep the definitions there
    wrapped: dict[str, Any] = {"type": "object", "properties": {"result": schema}, "required": ["result"]}
    if defs:
        wrapped["$defs"] = defs
    return wrapped


def _image_type(data: bytes) -> str | None:
    for magic, mime in _IMAGE_TYPES:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _record(record: ToolCallRecord) -> dict[str, Any]:
    """A tool-call record for a reply: a large result is replaced by a truncated JSON preview."""
    data: dict[str, Any] = msgspec.to_builtins(record)
    if data.get("result") is not None:
        encoded = msgspec.json.encode(data["result"]).decode("utf-8")
        if len(encoded) > _RECORD_RESULT_CHARS:
            data["result"] = truncate(encoded, _RECORD_RESULT_CHARS)
            data["result_truncated"] = True
    return data


def _error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


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
        image=image, limits=limits, tools=registry, return_mode=return_mode, max_reply_chars=max_reply_chars
    ) as server:
        if transport == "stdio":
            anyio.run(server.run_stdio)
        else:
            anyio.run(functools.partial(server.run_http, host, port))


__all__ = ["LimitsRequest", "RunCodeReply", "SandboxServer", "load_registry", "serve"]
