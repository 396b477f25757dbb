"""MCP client, code mode: a remote MCP server's tools called from guest code through the registry.

The remote server is written with the SDK's own ``MCPServer`` here and reached
in-process through ``mcp.Client``; one test reaches a real server process over
stdio (``wasmrun mcp`` itself).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'wasmrun[mcp]')")

import mcp_types as types
from mcp.client.stdio import StdioServerParameters
from mcp.server import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError as McpToolError

from wasmrun import Limits, Sandbox, ToolCall, ToolRegistry
from wasmrun.integrations.mcp import McpConnection, registry_from_mcp
from wasmrun.tools._schema_tool import InvalidArguments, SchemaSignature

ROOT = Path(__file__).resolve().parent.parent
LIMITS = Limits(timeout_s=10)


class Remote:
    """A small MCP server written with the SDK, counting the calls that reach it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        server = MCPServer("remote-test")
        self.server = server

        def seen(name: str, **arguments: Any) -> None:
            with self.lock:
                self.calls.append((name, arguments))

        @server.tool()
        def add(a: int, b: int = 2) -> int:
            """Add two integers."""
            seen("add", a=a, b=b)
            return a + b

        @server.tool(name="get-weather")
        def weather(city: str, units: str = "metric") -> dict[str, Any]:
            """Weather for a city."""
            seen("get-weather", city=city, units=units)
            return {"city": city, "temp": 21.5, "units": units}

        @server.tool()
        def shout(text: str) -> str:
            """Upper-case some text."""
            seen("shout", text=text)
            return text.upper()

        @server.tool()
        def explode(reason: str) -> str:
            """Always fails."""
            seen("explode", reason=reason)
            raise McpToolError(f"exploded: {reason}")

        @server.tool()
        async def slow(seconds: float) -> str:
            """Sleeps."""
            import anyio

            seen("slow", seconds=seconds)
            await anyio.sleep(seconds)
            return "done"

    def count(self, name: str) -> int:
        with self.lock:
            return sum(1 for called, _ in self.calls if called == name)


@pytest.fixture(scope="module")
def remote() -> Remote:
    return Remote()


@pytest.fixture(scope="module")
def connection(remote: Remote) -> Iterator[McpConnection]:
    with McpConnection(remote.server, call_timeout_s=20) as conn:
        yield conn


def make_registry(connection: McpConnection, tmp_path: Path, **options: Any) -> tuple[ToolRegistry, Path]:
    audit = tmp_path / "audit.jsonl"
    registry = registry_from_mcp(connection, audit=audit, **options)
    return registry, audit


def audit_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_remote_tools_are_registered_with_their_json_schemas(connection: McpConnection, tmp_path: Path) -> None:
    registry, _ = make_registry(connection, tmp_path)
    assert set(registry.tools) == {"add", "get_weather", "shout", "explode", "slow"}
    remote = {tool.name: tool for tool in connection.tools}
    assert registry.tools["add"].signature.schema == remote["add"].input_schema
    assert registry.tools["add"].description == "Add two integers."
    openai = {t["function"]["name"]: t["function"] for t in registry.openai_tools()}
    assert openai["add"]["parameters"]["required"] == ["a", "b"]  # strict form: optional b is nullable
    assert openai["add"]["strict"] is True


def test_guest_code_calls_a_remote_tool_through_the_registry(
    connection: McpConnection, remote: Remote, tmp_path: Path
) -> None:
    registry, audit = make_registry(connection, tmp_path)
    code = "import tools\nw = tools.get_weather('Oslo', units='imperial')\nprint(w['city'])\ntools.add(40, b=2)"
    result = Sandbox(limits=LIMITS, tools=registry, prewarm=0).run(code)
    assert result.ok, result.error
    assert (result.stdout, result.value) == ("Oslo\n", "42")
    assert [(r.tool, r.source, r.outcome) for r in result.tool_calls] == [
        ("get_weather", "guest", "ok"),
        ("add", "guest", "ok"),
    ]
    assert result.tool_calls[0].arguments == {"city": "Oslo", "units": "imperial"}
    assert result.tool_calls[0].result == {"city": "Oslo", "temp": 21.5, "units": "imperial"}
    logged = audit_of(audit)
    assert [(r["tool"], r["code"]) for r in logged] == [("get_weather", code), ("add", code)]
    assert ("get-weather", {"city": "Oslo", "units": "imperial"}) in remote.calls


def test_bad_arguments_are_refused_before_the_server_sees_them(
    connection: McpConnection, remote: Remote, tmp_path: Path
) -> None:
    registry, audit = make_registry(connection, tmp_path)
    before = remote.count("add")
    code = "import tools\ntry:\n    tools.add('forty')\nexcept tools.ToolError as e:\n    print(e)"
    result = Sandbox(limits=LIMITS, tools=registry, prewarm=0).run(code)
    assert result.ok, result.error
    assert result.stdout.startswith("add: invalid arguments: a: 'forty' is not of type 'integer'")
    assert remote.count("add") == before
    assert audit_of(audit)[-1]["outcome"] == "invalid"

    uncaught = Sandbox(limits=LIMITS, tools=registry, prewarm=0).run("import tools\ntools.add(1, c=3)")
    assert uncaught.error is not None and uncaught.error.kind in ("tool", "exception")
    assert "c" in uncaught.error.message


def test_a_remote_error_reaches_the_guest_as_tool_error(connection: McpConnection, tmp_path: Path) -> None:
    registry, audit = make_registry(connection, tmp_path)
    result = Sandbox(limits=LIMITS, tools=registry, prewarm=0).run("import tools\ntools.explode('on purpose')")
    assert result.error is not None and result.error.kind == "tool"
    assert "exploded: on purpose" in result.error.message
    assert audit_of(audit)[-1]["outcome"] == "error"


def test_policy_and_budgets_apply_to_remote_tools(connection: McpConnection, remote: Remote, tmp_path: Path) -> None:
    def policy(call: ToolCall) -> str | None:
        return "no shouting" if call.tool == "shout" else None

    registry = ToolRegistry(policy=policy)
    connection.register(registry, include=["shout", "add"], max_calls=1)
    assert set(registry.tools) == {"shout", "add"}
    shouts = remote.count("shout")
    denied = registry.call("shout", {"text": "hi"})
    assert (denied.outcome, denied.reason) == ("denied", "no shouting")
    assert remote.count("shout") == shouts

    code = "import tools\nprint(tools.add(1))\ntools.add(2)"
    result = Sandbox(limits=LIMITS, tools=registry, prewarm=0).run(code)
    assert result.stdout == "3\n"
    assert result.error is not None and "budget" in result.error.message
    assert [r.outcome for r in result.tool_calls] == ["ok", "denied"]


def test_a_models_direct_call_takes_the_same_path(connection: McpConnection, tmp_path: Path) -> None:
    registry, audit = make_registry(connection, tmp_path, max_calls=10)
    record = registry.call("shout", '{"text": "quiet"}')
    assert (record.outcome, record.result, record.source) == ("ok", "QUIET", "model")
    invalid = registry.call("shout", '{"text": 5}')
    assert invalid.outcome == "invalid" and "text: 5 is not of type 'string'" in (invalid.error or "")
    assert [r["outcome"] for r in audit_of(audit)] == ["ok", "invalid"]


def test_prefix_include_and_exclude(connection: McpConnection) -> None:
    registry = ToolRegistry()
    mapping = connection.register(registry, prefix="remote_", exclude=["slow", "explode"])
    assert mapping == {"remote_add": "add", "remote_get_weather": "get-weather", "remote_shout": "shout"}
    with pytest.raises(ValueError, match="taken"):
        connection.register(registry, prefix="remote_", include=["add"])


def test_a_slow_remote_tool_times_out_and_the_connection_keeps_working(connection: McpConnection) -> None:
    registry = ToolRegistry()
    connection.register(registry, include=["slow", "add"], timeout_s=1)
    started = time.monotonic()
    record = registry.call("slow", {"seconds": 5})
    assert record.outcome == "timeout"
    assert time.monotonic() - started < 4
    assert registry.call("add", {"a": 1}).result == 3


def test_a_tool_guest_code_cannot_call_is_skipped_with_its_reason() -> None:
    listed = [
        types.Tool(name="fine", input_schema={"type": "object", "properties": {"x": {"type": "integer"}}}),
        types.Tool(name="odd", input_schema={"type": "object", "properties": {"user-id": {"type": "string"}}}),
        types.Tool(name="broken", input_schema={"type": "object", "properties": {"x": {"type": 7}}}),
    ]

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(params.arguments))])

    server = Server("odd", on_list_tools=list_tools, on_call_tool=call_tool)
    with McpConnection(server) as conn:
        registry = ToolRegistry()
        assert conn.register(registry) == {"fine": "fine"}
        assert "user-id" in conn.skipped["odd"] and "invalid JSON schema" in conn.skipped["broken"]
        assert registry.call("fine", {"x": 3}).result == '{"x": 3}'


def test_a_closed_connection_fails_calls_clearly(remote: Remote) -> None:
    conn = McpConnection(remote.server)
    registry = registry_from_mcp(conn, include=["add"])
    conn.close()
    conn.close()  # idempotent
    record = registry.call("add", {"a": 1})
    assert record.outcome == "error" and "connection is closed" in (record.error or "")


def test_connecting_to_nothing_fails_within_the_timeout() -> None:
    params = StdioServerParameters(command=sys.executable, args=["-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    with pytest.raises((TimeoutError, OSError, RuntimeError)):
        McpConnection(params, connect_timeout_s=2)
    assert time.monotonic() - started < 20


def test_code_mode_against_a_wasmrun_mcp_server_process_over_stdio(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", "from wasmrun.cli import app; app()", "mcp", "--tools", "mcp_registry:registry"],
        env=env,
        cwd=str(ROOT),
    )
    with McpConnection(params, connect_timeout_s=120) as remote_wasmrun:
        registry = ToolRegistry(audit=tmp_path / "audit.jsonl")
        mapping = remote_wasmrun.register(registry, include=["revenue", "run_code"], prefix="far_")
        assert mapping == {"far_revenue": "revenue", "far_run_code": "run_code"}
        code = (
            "import tools\nr = tools.far_revenue('east')\n"
            "remote = tools.far_run_code(code='2 + 3')\n(r['revenue'], remote['value'])"
        )
        result = Sandbox(limits=Limits(timeout_s=60), tools=registry, prewarm=0).run(code)
    assert result.ok, result.error
    assert result.value == "(143.0, '5')"


# -- the JSON-schema signature ---------------------------------------------------------------
SCHEMA = {
    "type": "object",
    "properties": {
        "a": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "mode": {"enum": ["x", "y"], "default": "x"},
    },
    "required": ["a"],
    "additionalProperties": False,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["a", "tags", "mode", "other", ""]), json_values, max_size=4))
def test_schema_validation_accepts_exactly_what_the_schema_allows(arguments: dict[str, Any]) -> None:
    import jsonschema

    signature = SchemaSignature("t", SCHEMA, "A tool.")
    valid = jsonschema.Draft202012Validator(SCHEMA).is_valid(arguments)
    try:
        shown, positional, keywords = signature.bind(arguments)
    except InvalidArguments as exc:
        assert not valid
        assert len(str(exc)) < 2_000
    else:
        assert valid
        assert shown == keywords == arguments and positional == []


def test_schema_signature_builds_a_guest_stub_and_refuses_bad_schemas() -> None:
    signature = SchemaSignature("t", SCHEMA, "A tool.")
    params = {p["name"]: p for p in signature.guest_params}
    assert params["a"] == {"name": "a", "kind": "POSITIONAL_OR_KEYWORD", "annotation": "int"}
    assert params["mode"]["kind"] == "KEYWORD_ONLY" and params["mode"]["default"] == "x"
    assert params["tags"]["default_repr"] == "<unset>"
    assert "    a (int)\n" in signature.docstring and "    tags (list, optional)" in signature.docstring
    for bad, message in [
        ({"type": "string"}, "must describe an object"),
        ({"type": "object", "properties": {"a": {"type": "nonsense"}}}, "invalid JSON schema"),
        ({"type": "object", "properties": {"class": {"type": "string"}}}, "not a Python identifier"),
    ]:
        with pytest.raises(ValueError, match=message):
            SchemaSignature("t", bad, None)


def test_add_schema_tool_checks_its_name_like_tool() -> None:
    registry = ToolRegistry()
    registry.add_schema_tool("ok", lambda **kw: kw, parameters=SCHEMA)
    with pytest.raises(ValueError, match="already registered"):
        registry.add_schema_tool("ok", lambda **kw: kw, parameters=SCHEMA)
    with pytest.raises(ValueError, match="identifier"):
        registry.add_schema_tool("not-ok", lambda **kw: kw, parameters=SCHEMA)
    record = registry.call("ok", {"a": 1, "tags": ["p"]})
    assert (record.outcome, record.result) == ("ok", {"a": 1, "tags": ["p"]})


def test_the_mcp_example_runs_offline() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mcp_server_and_client.py")],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "MCP tools: run_code, run_code_in_session, run_python_code, query_database, get_targets" in done.stdout
    assert "second call sees the first's `t`: 3" in done.stdout
    assert "missed target" in done.stdout and "hostile run_code: timeout" in done.stdout
    assert "guest value: [108.0, 1160.0]" in done.stdout
    assert "amount: 'lots' is not of type 'number'" in done.stdout


schemas = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["string", "integer", "number", "object", "array", "boolean", "null", "nope"]),
            "$ref": st.sampled_from(["#", "#/nope", "#/$defs/x", "https://example.com/s.json", "x"]),
            "pattern": st.sampled_from(["^a+$", "(a", "a{2,}"]),
            "minimum": st.integers() | st.text(max_size=3),
            "enum": st.lists(json_values, max_size=3),
        },
    ),
    lambda inner: st.fixed_dictionaries(
        {},
        optional={
            "properties": st.dictionaries(st.sampled_from(["a", "b", "c-d", "class"]), inner, max_size=3),
            "items": inner,
            "anyOf": st.lists(inner, min_size=1, max_size=3),
            "$defs": st.dictionaries(st.just("x"), inner, max_size=1),
            "required": st.lists(st.sampled_from(["a", "b", "z"]), max_size=3),
        },
    ),
    max_leaves=8,
)


@settings(max_examples=300)
@given(schemas, st.dictionaries(st.sampled_from(["a", "b"]), json_values, max_size=2))
def test_an_untrusted_schema_fails_registration_or_calls_cleanly_never_the_host(
    schema: dict[str, Any], arguments: dict[str, Any]
) -> None:
    registry = ToolRegistry()
    try:
        registry.add_schema_tool("remote", lambda **kw: "ok", parameters=schema)
    except (ValueError, TypeError):
        return
    definition = registry.openai_tools()[0]["function"]  # exportable to a model, strict or not
    assert definition["name"] == "remote" and isinstance(definition["parameters"], dict)
    assert registry.guest_specs()[0]["name"] == "remote"
    record = registry.call("remote", arguments)  # never raises: the record says what happened
    assert record.outcome in ("ok", "invalid")
    if record.outcome == "invalid":
        assert record.error is not None and record.error.startswith("remote: ")
