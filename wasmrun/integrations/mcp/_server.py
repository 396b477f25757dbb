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
* ``run_code_in_session(code, files?, limits?, session?, close?)``: the same, in a
  `wasmrun.Session` named by the token ``session`` that each reply carries, so state
  persists across the calls that pass it (see `wasmrun.integrations.mcp._sessions`).
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

Each direct tool call is its own `wasmrun.RunContext` (per-run budgets apply per
call): the protocol revision the SDK speaks by default has no server-side session
to hang budgets on, so bound calls across requests with the registry's
``rate_limit``.
"""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Sequence
from typing import Any

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
    RunCodeInSessionRequest,
    RunCodeRequest,
    RunPythonCodeRequest,
    apply_limits,
    explain,
    limits_summary,
)
from ._sessions import MAX_SESSIONS, SessionRefused, SessionStore

logger = logging.getLogger("wasmrun.mcp")

RUN_CODE = "run_code"
RUN_CODE_IN_SESSION = "run_code_in_session"
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
    session: str | None = pydantic.Field(None, description="run_code_in_session: pass it back to continue")
    session_call: int | None = pydantic.Field(None, description="run_code_in_session: which call of the session")


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
        max_sessions: int = MAX_SESSIONS,
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
        reserved = {RUN_CODE, RUN_CODE_IN_SESSION, RUN_PYTHON_CODE} & set(tools.tools if tools is not None else ())
        if reserved:
            raise ValueError(f"registry tool names {sorted(reserved)} clash with the server's own tools; rename them")
        self._structured: set[str] = set()
        self._sessions = SessionStore(self.sandbox, self.limits, max_sessions)
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
        """Close the sessions and release the sandbox's pre-warmed instances; the server refuses further runs."""
        self._sessions.close()
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
        in_session = types.Tool(
            name=RUN_CODE_IN_SESSION,
            title="Run Python code in this client's persistent wasmrun session",
            description=(
                "Like run_code, but in a persistent interpreter: variables, imports and files stay across calls. "
                "Omit `session` to start a new session; its reply has a `session` token: pass it in later calls to "
                "continue there. A call stopped by a limit is rolled back. Pass close=true in the last call."
            ),
            input_schema=RunCodeInSessionRequest.model_json_schema(),
            output_schema=RunCodeReply.model_json_schema(),
            annotations=run_code.annotations,
        )
        return [run_code, in_session, run_python, *direct]

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
        if params.name == RUN_CODE_IN_SESSION:
            return await self.run_code_in_session(arguments)
        if params.name == RUN_PYTHON_CODE:
            return await self.run_python_code(arguments)
        if self.registry is not None and params.name in self.registry.tools:
            return await self.call_registry_tool(params.name, arguments, RunContext())
        known = ", ".join(tool.name for tool in self._tool_list)
        return _error_result(f"no tool named {params.name!r} (available: {known})")

    async def run_code(self, arguments: dict[str, Any]) -> types.CallToolResult:
        """Handle one ``run_code`` call (validated here: the arguments are untrusted)."""
        try:
            request = RunCodeRequest.model_validate(arguments)
        except pydantic.ValidationError as exc:
            return _error_result(f"run_code: invalid arguments: {explain(exc)}")
        applied = apply_limits(self.limits, request.limits)
        result = await self._run(request.code, applied.limits, request.files)
        return self._code_result(result, applied.limits, applied.notes)

    async def run_code_in_session(self, arguments: dict[str, Any]) -> types.CallToolResult:
        """Handle one ``run_code_in_session`` call: in the session its token names, or a new one."""
        try:
            request = RunCodeInSessionRequest.model_validate(arguments)
        except pydantic.ValidationError as exc:
            return _error_result(f"run_code_in_session: invalid arguments: {explain(exc)}")
        applied = apply_limits(self.limits, request.limits)
        store = self._sessions
        run = functools.partial(store.run, request.session, request.code, applied.limits, request.files, request.close)
        try:
            token, result, notes = await anyio.to_thread.run_sync(run)
        except SessionRefused as exc:
            return _error_result(f"run_code_in_session: {exc}")
        return self._code_result(result, applied.limits, [*applied.notes, *notes], session=token)

    def _code_result(
        self, result: Result, limits: Limits, notes: Sequence[str], session: str | None = None
    ) -> types.CallToolResult:
        reply, images = self._reply(result, limits, notes, session)
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
        self, result: Result, limits: Limits, notes: Sequence[str], session: str | None = None
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
            session=session,
            session_call=result.stats.session_call,
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


__all__ = ["LimitsRequest", "RunCodeReply", "SandboxServer"]
