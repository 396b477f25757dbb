"""MCP client, "code mode": the tools of any MCP server as registry tools that guest code calls.

>>> with McpConnection("http://127.0.0.1:8000/mcp") as github:      # or StdioServerParameters(...)
...     registry = ToolRegistry(audit="audit.jsonl")
...     github.register(registry, prefix="gh_")
...     wasmrun.run("import tools\\nlen(tools.gh_list_issues(repo='x/y'))", tools=registry)

Each remote tool is registered with its own JSON schema (`ToolRegistry.add_schema_tool`),
so a call from guest code (or a model's direct call) goes through the registry's
pipeline: the arguments are validated against the schema before anything is sent,
then policy, approval, budgets and the audit log apply as for a local tool. The
MCP connection, and any credentials it carries (URL, headers, the stdio server's
environment), live only on the host: the guest sees Python functions.

The registry calls handlers synchronously on worker threads, while the SDK's
client is asynchronous: `McpConnection` keeps one `mcp.Client` open on an event
loop of its own, on a daemon thread, and each call is submitted to that loop and
waited for (bounded by the tool's timeout).

Replies become Python values for the guest: a tool's structured content (a
dict; unwrapped when it is the SDK's ``{"result": value}`` wrapper) when it has
some, else its text (the text blocks joined), else a list of
content blocks as dicts (images as ``{"type": "image", "mime_type", "data"}``
with base64 data). A reply with ``isError`` raises ``tools.ToolError`` in the
guest with the server's message.

Remote names that are not Python identifiers (``get-weather``) are registered
with every other character replaced by ``_``; a tool whose parameters cannot be
passed from Python (a property named ``user-id``) or whose schema is invalid is
skipped with a warning and listed in ``McpConnection.skipped``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import mcp
import mcp_types as types

from wasmrun import ToolError, ToolRegistry

logger = logging.getLogger("wasmrun.mcp")

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
_MAX_PAGES = 100


class McpConnection:
    """One open connection to an MCP server, usable from synchronous code (e.g. tool handlers).

    `server` is anything `mcp.Client` accepts: a streamable-HTTP URL, a
    ``mcp.StdioServerParameters`` (the server is started as a subprocess), a
    transport, or an in-process ``Server``/``MCPServer`` (tests). The tools are
    listed once, when connecting (`tools`). Close it (or use ``with``) to end the
    connection and its thread.
    """

    def __init__(
        self,
        server: Any,
        *,
        connect_timeout_s: float = 30.0,
        call_timeout_s: float = 60.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.call_timeout_s = call_timeout_s
        self.skipped: dict[str, str] = {}
        self._target = server
        self._options = dict(client_options or {})
        self._client: mcp.Client | None = None
        self._stop: asyncio.Event | None = None
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wasmrun-mcp-client", daemon=True)
        self._thread.start()
        ready: concurrent.futures.Future[list[types.Tool]] = concurrent.futures.Future()
        self._main = asyncio.run_coroutine_threadsafe(self._serve(ready), self._loop)
        try:
            self.tools: list[types.Tool] = ready.result(timeout=connect_timeout_s)
            self._output_schemas = {tool.name: tool.output_schema for tool in self.tools}
        except BaseException as exc:
            self.close()
            if isinstance(exc, concurrent.futures.TimeoutError):
                raise TimeoutError(f"could not connect to the MCP server within {connect_timeout_s:g}s") from None
            raise

    async def _serve(self, ready: concurrent.futures.Future[list[types.Tool]]) -> None:
        # The client is entered and exited in this one task: the SDK's cancel scopes require it.
        self._stop = asyncio.Event()
        try:
            async with mcp.Client(self._target, **self._options) as client:
                tools: list[types.Tool] = []
                cursor: str | None = None
                for _ in range(_MAX_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                self._client = client
                ready.set_result(tools)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise
        finally:
            self._client = None

    def call(self, name: str, arguments: Mapping[str, Any], *, timeout_s: float | None = None) -> Any:
        """Call the remote tool `name` and return its reply as a Python value (see the module notes).

        Raises `wasmrun.ToolError` when the server answers with an error (``isError``) or the
        connection is closed, and `TimeoutError` when no answer comes within `timeout_s`.
        """
        client = self._client
        if self._closed or client is None:
            raise ToolError(f"{name}: the MCP connection is closed")
        timeout = timeout_s if timeout_s is not None else self.call_timeout_s
        future = asyncio.run_coroutine_threadsafe(
            client.call_tool(name, dict(arguments), read_timeout_seconds=timeout), self._loop
        )
        try:
            result = future.result(timeout=timeout + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{name}: the MCP server did not answer within {timeout:g}s") from None
        return reply_value(name, result, self._output_schemas.get(name))

    def _forward(self, remote: str, timeout_s: float, /, **arguments: Any) -> Any:
        return self.call(remote, arguments, timeout_s=timeout_s)

    def register(
        self,
        registry: ToolRegistry,
        *,
        prefix: str = "",
        include: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        timeout_s: float | None = None,
        requires_approval: bool = False,
        max_calls: int | None = None,
    ) -> dict[str, str]:
        """Register the server's tools in `registry`; returns {registered name: remote name}.

        `include`/`exclude` pick remote tools by name; `prefix` is put before each
        registered name (e.g. to tell two servers apart). `timeout_s`,
        `requires_approval` and `max_calls` apply to every registered tool, as for
        ``registry.tool``. A tool that cannot be registered is skipped with a
        warning and its reason kept in `skipped`; a name clash raises ValueError.
        """
        wanted = set(include) if include is not None else None
        unwanted = set(exclude)
        registered: dict[str, str] = {}
        for tool in self.tools:
            if (wanted is not None and tool.name not in wanted) or tool.name in unwanted:
                continue
            local = prefix + _NOT_NAME.sub("_", tool.name)
            if local[:1].isdigit():
                local = "_" + local
            if local in registry.tools:
                raise ValueError(f"MCP tool {tool.name!r} would be registered as {local!r}, which is taken")
            tool_timeout = timeout_s if timeout_s is not None else registry.default_timeout_s
            try:
                registry.add_schema_tool(
                    local,
                    functools.partial(self._forward, tool.name, tool_timeout),
                    parameters=tool.input_schema,
                    description=tool.description or tool.title,
                    timeout_s=tool_timeout,
                    requires_approval=requires_approval,
                    max_calls=max_calls,
                )
            except (TypeError, ValueError) as exc:
                logger.warning("MCP tool %r not registered: %s", tool.name, exc)
                self.skipped[tool.name] = str(exc)
                continue
            registered[local] = tool.name
        return registered

    def close(self) -> None:
        """End the connection (and a stdio server process), then the event-loop thread."""
        if self._closed:
            return
        self._closed = True
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        try:
            self._main.result(timeout=10)
        except BaseException as exc:  # noqa: BLE001 - closing must finish whatever the connection ended with
            self._main.cancel()
            logger.debug("MCP connection ended with %r", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> McpConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reply_value(name: str, result: types.CallToolResult, output_schema: Mapping[str, Any] | None = None) -> Any:
    """A tool result as the value guest code gets (or `wasmrun.ToolError` for an error result).

    Structured content whose `output_schema` is the SDK's wrapper for a non-object
    return value (one required property ``result``) is unwrapped: ``{"result": 42}`` -> ``42``.
    """
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    if result.is_error:
        raise ToolError(f"{name}: {' '.join(texts) or 'the MCP server reported an error'}")
    structured = result.structured_content
    if structured is not None:
        if _wraps_result(output_schema) and set(structured) == {"result"}:
            return structured["result"]
        return structured
    if len(texts) == len(result.content):
        return "\n".join(texts)
    return [block.model_dump(mode="json", exclude_none=True) for block in result.content]


def _wraps_result(schema: Mapping[str, Any] | None) -> bool:
    if not schema:
        return False
    properties = schema.get("properties")
    return isinstance(properties, dict) and set(properties) == {"result"} and schema.get("required") == ["result"]


def registry_from_mcp(
    connection: McpConnection,
    *,
    prefix: str = "",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    **registry_options: Any,
) -> ToolRegistry:
    """A new `wasmrun.ToolRegistry` (``registry_options`` as for its constructor) with the server's tools."""
    registry = ToolRegistry(**registry_options)
    connection.register(registry, prefix=prefix, include=include, exclude=exclude)
    return registry
