"""The MCP server, exercised with the official ``mcp`` SDK's own client.

Most tests connect the SDK's `mcp.Client` to the server in-process (the SDK's
direct dispatcher: real request handling, no framing); the transport tests spawn
``python -m wasmrun.integrations.mcp`` and talk to it over stdio and streamable
HTTP on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'wasmrun[mcp]')")

import mcp
import mcp_types as types
import pydantic
from mcp.client.stdio import StdioServerParameters
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

import wasmrun
from wasmrun import ImageError, Limits, ToolRegistry
from wasmrun.integrations.mcp import (
    LimitsRequest,
    McpConnection,
    RunCodeRequest,
    SandboxServer,
    apply_limits,
    load_registry,
)
from wasmrun.integrations.mcp._run_python import literal_value, reply

sys.path.insert(0, str(Path(__file__).parent))
import mcp_registry

ROOT = Path(__file__).resolve().parent.parent
SERVER_LIMITS = Limits(timeout_s=5.0, memory_bytes=128 * 1024 * 1024)
CALL_TIMEOUT_S = 60.0
#: The `wasmrun mcp` command of the wasmrun being tested (this checkout, via PYTHONPATH).
WASMRUN_MCP = [sys.executable, "-c", "from wasmrun.cli import app; app()", "mcp"]


@pytest.fixture(scope="module")
def audit_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "audit.jsonl"


@pytest.fixture(scope="module")
def server(audit_path: Path) -> Iterator[SandboxServer]:
    registry = mcp_registry.make_registry(str(audit_path))
    with SandboxServer(limits=SERVER_LIMITS, tools=registry, prewarm=0) as srv:
        yield srv


def call(server: SandboxServer, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
    """One tool call through the SDK's client, in-process."""

    async def go() -> types.CallToolResult:
        with anyio.fail_after(CALL_TIMEOUT_S):
            async with mcp.Client(server.server) as client:
                return await client.call_tool(name, arguments)

    return anyio.run(go)


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


def assert_alive(server: SandboxServer) -> None:
    result = call(server, "run_code", {"code": "print(6 * 7)\n[i * i for i in range(4)]"})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert result.structured_content["stdout"] == "42\n"
    assert result.structured_content["value"] == "[0, 1, 4, 9]"


# -- listing -------------------------------------------------------------------------
def test_lists_code_tools_and_registry_tools_with_their_schemas(server: SandboxServer) -> None:
    async def go() -> types.ListToolsResult:
        async with mcp.Client(server.server) as client:
            return await client.list_tools()

    listed = {tool.name: tool for tool in anyio.run(go).tools}
    assert set(listed) == {"run_code", "run_code_in_session", "run_python_code", "revenue"}
    assert listed["run_code"].input_schema["required"] == ["code"]
    assert listed["run_code"].output_schema is not None
    assert listed["run_python_code"].input_schema["required"] == ["python_code"]
    assert server.registry is not None
    expected = server.registry.tools["revenue"].signature.schema
    assert listed["revenue"].input_schema["properties"] == expected["properties"]
    assert listed["revenue"].input_schema["required"] == ["region"]
    assert listed["revenue"].description is not None and "Revenue of a region" in listed["revenue"].description
    assert "import tools" in (listed["run_code"].description or "")


def test_a_handshake_era_client_is_served_too(server: SandboxServer) -> None:
    """Desktop clients still speak the initialize-handshake protocol revisions; the server answers both."""

    async def go() -> None:
        with anyio.fail_after(CALL_TIMEOUT_S):
            async with mcp.Client(server.server, mode="legacy") as client:
                assert client.protocol_version not in MODERN_PROTOCOL_VERSIONS
                reply = await client.call_tool("run_code", {"code": "6 * 7"})
                assert reply.structured_content is not None and reply.structured_content["value"] == "42"

    anyio.run(go)


# -- run_code --------------------------------------------------------------------------
def test_run_code_returns_stdout_stderr_value_and_the_same_json_as_text(server: SandboxServer) -> None:
    result = call(server, "run_code", {"code": "import sys\nprint('hi')\nprint('warn', file=sys.stderr)\n6 * 7"})
    assert not result.is_error
    data = result.structured_content
    assert data is not None
    assert (data["ok"], data["stdout"], data["stderr"], data["value"], data["error"]) == (
        True,
        "hi\n",
        "warn\n",
        "42",
        None,
    )
    assert json.loads(text_of(result)) == data
    assert data["limits"]["timeout_s"] == SERVER_LIMITS.timeout_s


def test_run_code_reads_input_files(server: SandboxServer) -> None:
    result = call(
        server, "run_code", {"code": "open('data/q3.csv').read().split(',')", "files": {"data/q3.csv": "a,b"}}
    )
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["value"] == "['a', 'b']"


def test_run_code_reports_an_exception_as_a_tool_error_with_kind_and_line(server: SandboxServer) -> None:
    result = call(server, "run_code", {"code": "x = 1\nraise ValueError('boom')"})
    assert result.is_error
    error = json.loads(text_of(result))["error"]
    assert (error["kind"], error["type"], error["message"], error["lineno"]) == ("exception", "ValueError", "boom", 2)
    assert "Traceback" in error["traceback"]


@pytest.mark.parametrize(
    ("code", "limits", "kind"),
    [
        ("while True: pass", {"timeout_s": 1}, "timeout"),
        ("import time\ntime.sleep(30)", {"timeout_s": 1}, "timeout"),
        ("x = bytearray(1 << 30)", {}, "memory"),
        ("print('x' * 3_000_000)", {"max_output_bytes": 100_000}, "output_limit"),
        ("def f(): f()\nf()", {}, "exception"),
    ],
    ids=["busy-loop", "sleep", "memory", "huge-output", "recursion"],
)
def test_hostile_code_is_contained_and_the_server_keeps_answering(
    server: SandboxServer, code: str, limits: dict[str, Any], kind: str
) -> None:
    result = call(server, "run_code", {"code": code, "limits": limits})
    assert result.is_error
    data = json.loads(text_of(result))
    assert data["error"]["kind"] == kind, data["error"]
    assert len(text_of(result)) < 3 * server.max_reply_chars
    assert_alive(server)


def test_host_files_are_out_of_reach(server: SandboxServer) -> None:
    result = call(server, "run_code", {"code": "open('/etc/passwd').read()"})
    assert result.is_error
    data = json.loads(text_of(result))
    assert data["error"]["type"] in ("FileNotFoundError", "PermissionError", "OSError")
    assert "root:" not in text_of(result)
    assert_alive(server)


def test_huge_output_is_cut_to_the_reply_cap_with_a_note(server: SandboxServer) -> None:
    result = call(server, "run_code", {"code": "print('y' * 200_000)"})
    assert not result.is_error
    data = result.structured_content
    assert data is not None
    assert len(data["stdout"]) < server.max_reply_chars + 200
    assert "characters truncated" in data["stdout"]
    assert any("stdout is 200,001 characters" in note for note in data["notes"])


# -- limits ----------------------------------------------------------------------------
def test_limits_above_the_server_maxima_are_lowered_with_a_note(server: SandboxServer) -> None:
    result = call(server, "run_code", {"code": "1", "limits": {"timeout_s": 1000, "memory_mb": 4096, "fuel": 2}})
    data = result.structured_content
    assert data is not None
    assert data["limits"]["timeout_s"] == SERVER_LIMITS.timeout_s
    assert data["limits"]["memory_mb"] == 128
    assert data["limits"]["fuel"] == 2  # lower than the maximum: taken as asked
    assert len(data["notes"]) == 2 and all("above this server's maximum" in note for note in data["notes"])


def test_a_tiny_fuel_budget_asked_by_the_client_is_enforced(server: SandboxServer) -> None:
    result = call(server, "run_code", {"code": "sum(range(10**7))", "limits": {"fuel": 1_000_000}})
    assert result.is_error
    assert json.loads(text_of(result))["error"]["kind"] == "fuel"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"code": "1", "limits": {"timeout_s": -1}}, "limits.timeout_s"),
        ({"code": "1", "limits": {"memory_mb": 1}}, "limits.memory_mb"),
        ({"code": "1", "limits": {"fuel": "lots"}}, "limits.fuel"),
        ({"code": "1", "limits": {"cpu": 1}}, "limits.cpu"),
        ({"code": 42}, "code"),
        ({}, "code"),
        ({"code": "1", "files": {"../x": "a"}}, "files"),
        ({"code": "1", "files": {"x.txt": "\ud800"}}, "lone surrogate"),
        ({"code": "1", "extra": True}, "extra"),
    ],
)
def test_invalid_arguments_are_refused_clearly(server: SandboxServer, arguments: dict[str, Any], fragment: str) -> None:
    result = call(server, "run_code", arguments)
    assert result.is_error
    assert text_of(result).startswith("run_code: invalid arguments: ")
    assert fragment in text_of(result)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["timeout_s", "memory_mb", "fuel", "max_output_bytes", "other"]), json_values, max_size=5
    )
)
def test_any_limits_request_is_refused_or_stays_within_the_maxima(raw: dict[str, Any]) -> None:
    try:
        request = RunCodeRequest.model_validate({"code": "1", "limits": raw})
    except pydantic.ValidationError:
        return
    applied = apply_limits(SERVER_LIMITS, request.limits)
    assert isinstance(applied.limits, Limits)
    assert 0 < applied.limits.timeout_s <= SERVER_LIMITS.timeout_s
    assert 64 * 1024 * 1024 <= applied.limits.memory_bytes <= SERVER_LIMITS.memory_bytes
    assert 1 <= applied.limits.fuel <= SERVER_LIMITS.fuel
    assert 1 <= applied.limits.max_output_bytes <= SERVER_LIMITS.max_output_bytes


def test_no_limits_request_means_the_server_limits() -> None:
    assert apply_limits(SERVER_LIMITS, None).limits == SERVER_LIMITS
    assert apply_limits(SERVER_LIMITS, LimitsRequest()).limits == SERVER_LIMITS


# -- registry tools --------------------------------------------------------------------
def test_registry_tool_as_a_direct_mcp_tool_goes_through_the_registry(server: SandboxServer, audit_path: Path) -> None:
    result = call(server, "revenue", {"region": "east"})
    assert not result.is_error, text_of(result)
    assert json.loads(text_of(result)) == {"region": "east", "quarter": 3, "revenue": 143.0}
    assert result.structured_content == {"result": {"region": "east", "quarter": 3, "revenue": 143.0}}

    bad = call(server, "revenue", {"region": "east", "quarter": "third"})
    assert bad.is_error
    assert "revenue: invalid arguments: quarter" in text_of(bad)

    failing = call(server, "revenue", {"region": "west"})
    assert failing.is_error and "unknown region 'west'" in text_of(failing)

    model_records = [r for r in mcp_registry_audit(audit_path) if r["source"] == "model"]
    assert [r["outcome"] for r in model_records[-3:]] == ["ok", "invalid", "error"]
    assert model_records[-3]["arguments"] == {"region": "east", "quarter": 3}


def test_registry_tools_are_importable_inside_run_code(server: SandboxServer, audit_path: Path) -> None:
    code = "import tools\nr = tools.revenue('north', quarter=2)\nprint(r['revenue'])\nr['quarter']"
    result = call(server, "run_code", {"code": code})
    assert not result.is_error, text_of(result)
    data = result.structured_content
    assert data is not None
    assert (data["stdout"], data["value"]) == ("120.5\n", "2")
    assert data["tool_calls_total"] == 1
    record = data["tool_calls"][0]
    assert (record["tool"], record["source"], record["outcome"]) == ("revenue", "guest", "ok")
    logged = mcp_registry_audit(audit_path)[-1]
    assert (logged["tool"], logged["source"], logged["code"]) == ("revenue", "guest", code)


def test_a_bad_tool_call_from_guest_code_is_a_tool_error(server: SandboxServer) -> None:
    result = call(server, "run_code", {"code": "import tools\ntools.revenue(region=5)"})
    assert result.is_error
    data = json.loads(text_of(result))
    assert data["error"]["kind"] == "tool"
    assert data["tool_calls"][0]["outcome"] == "invalid"


def test_unknown_tool_is_a_tool_error_naming_the_available_ones(server: SandboxServer) -> None:
    result = call(server, "rm_rf", {})
    assert result.is_error
    assert "no tool named 'rm_rf'" in text_of(result) and "run_code" in text_of(result)


def test_registry_tool_names_may_not_shadow_the_code_tools() -> None:
    registry = mcp_registry.make_registry()

    @registry.tool
    def run_code(code: str) -> str:
        return code

    with pytest.raises(ValueError, match="clash"):
        SandboxServer(tools=registry, prewarm=0)


# -- sessions ----------------------------------------------------------------------------
def test_run_code_in_session_keeps_state_under_its_token(server: SandboxServer) -> None:
    async def go() -> None:
        with anyio.fail_after(CALL_TIMEOUT_S):
            async with mcp.Client(server.server) as client:

                async def run(code: str, **extra: Any) -> dict[str, Any]:
                    reply = await client.call_tool("run_code_in_session", {"code": code, **extra})
                    data = json.loads(text_of(reply))
                    assert reply.is_error == (not data["ok"])
                    return dict(data)

                one = await run("x = 20\nopen('n.txt', 'w').write('1')")
                token = one["session"]
                assert isinstance(token, str) and len(token) >= 20 and one["session_call"] == 1
                two = await run("x + int(open('n.txt').read()) + 21", session=token)
                assert (two["value"], two["session"], two["session_call"]) == ("42", token, 2)

                other = await run("x")  # no token: a new, empty session
                assert other["error"]["type"] == "NameError" and other["session"] != token

                stopped = await run("x = 0\nwhile True: pass", session=token, limits={"timeout_s": 1})
                assert stopped["error"]["kind"] == "timeout"
                assert any("rolled back" in note for note in stopped["notes"])
                assert (await run("x", session=token))["value"] == "20"

                last = await run("x * 2", session=token, close=True)
                assert last["value"] == "40" and "The session is closed." in last["notes"]
                gone = await client.call_tool("run_code_in_session", {"code": "x", "session": token})
                assert gone.is_error and "no such session" in text_of(gone)

                plain = await client.call_tool("run_code", {"code": "'x' in globals()"})
                assert plain.structured_content is not None
                assert (plain.structured_content["value"], plain.structured_content["session"]) == ("False", None)

    anyio.run(go)


def test_sessions_are_capped_and_unknown_tokens_refused() -> None:
    async def go(srv: SandboxServer) -> None:
        with anyio.fail_after(CALL_TIMEOUT_S):
            async with mcp.Client(srv.server) as client:
                first = await client.call_tool("run_code_in_session", {"code": "1"})
                assert not first.is_error
                refused = await client.call_tool("run_code_in_session", {"code": "1"})
                assert refused.is_error and "holds 1 sessions already" in text_of(refused)
                forged = await client.call_tool("run_code_in_session", {"code": "1", "session": "guess"})
                assert forged.is_error and "no such session" in text_of(forged)
                assert not (await client.call_tool("run_code", {"code": "1"})).is_error
                token = json.loads(text_of(first))["session"]
                closing = await client.call_tool("run_code_in_session", {"code": "2", "session": token, "close": True})
                assert not closing.is_error
                again = await client.call_tool("run_code_in_session", {"code": "3"})
                assert not again.is_error, text_of(again)

    with SandboxServer(limits=SERVER_LIMITS, prewarm=0, max_sessions=1) as capped:
        anyio.run(go, capped)


def test_load_registry_names_what_is_wrong() -> None:
    assert load_registry("mcp_registry:registry") is mcp_registry.registry
    assert load_registry("mcp_registry:make_registry").tools.keys() == {"revenue"}
    for spec, message in [
        ("mcp_registry", "module:attribute"),
        ("no_such_module_xyz:registry", "cannot import"),
        ("mcp_registry:nothing", "no attribute"),
        ("mcp_registry:SALES", "expected a wasmrun.ToolRegistry"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_registry(spec)


def mcp_registry_audit(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- the mcp-run-python drop-in ------------------------------------------------------------
def test_run_python_code_replies_like_mcp_run_python(server: SandboxServer) -> None:
    result = call(server, "run_python_code", {"python_code": "print('a')\nprint('b')\n{'x': [1, 2.5, None]}"})
    assert not result.is_error
    assert text_of(result) == (
        '<status>success</status>\n<output>\na\nb\n</output>\n<return_value>\n{"x": [1, 2.5, null]}\n</return_value>'
    )


def test_run_python_code_error_reply_with_global_variables_keeps_the_users_line_numbers(server: SandboxServer) -> None:
    result = call(
        server, "run_python_code", {"python_code": "print(n)\nraise KeyError(n)", "global_variables": {"n": 7}}
    )
    text = text_of(result)
    assert text.startswith("<status>run-error</status>\n<output>\n7\n</output>\n<error>\n")
    assert 'File "<code>", line 2' in text and "KeyError: 7" in text


def test_run_python_code_json_mode_has_status_output_and_return_value_or_error() -> None:
    with SandboxServer(limits=SERVER_LIMITS, return_mode="json", prewarm=0) as json_server:
        ok = json.loads(text_of(call(json_server, "run_python_code", {"python_code": "print(1)\n(1, 'a')"})))
        assert ok == {"status": "success", "output": ["1"], "return_value": [1, "a"]}
        failed = json.loads(text_of(call(json_server, "run_python_code", {"python_code": "1/0"})))
        assert set(failed) == {"status", "output", "error"}
        assert failed["status"] == "run-error" and "ZeroDivisionError" in failed["error"]
        # Blocked, not spinning: a spinning guest can use up Limits.fuel (5e10, ~5 s here) before the 5 s deadline.
        hung = json.loads(text_of(call(json_server, "run_python_code", {"python_code": "import time; time.sleep(60)"})))
        assert hung["status"] == "run-error" and "timeout" in hung["error"]


def test_run_python_code_refuses_bad_global_names(server: SandboxServer) -> None:
    result = call(server, "run_python_code", {"python_code": "1", "global_variables": {"not a name": 1}})
    assert result.is_error and "global_variables" in text_of(result)


literals = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)


@given(literals)
def test_literal_values_come_back_as_their_json(value: Any) -> None:
    assert literal_value(repr(value)) == json.loads(json.dumps(value))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.sampled_from(["[" * 5000, "{1: 2}", "float('nan')", "b'x'", "nan", "1e999"]))
def test_any_guest_repr_gives_a_json_value_or_itself(text: str) -> None:
    value = literal_value(text)
    json.dumps(value, allow_nan=False)  # always plain JSON, whatever the guest printed
    if value != text:  # not the fallback: then the text was a literal that means exactly this value
        assert json.loads(json.dumps(_literal(text))) == value


def _literal(text: str) -> Any:
    import ast

    return ast.literal_eval(text)


@given(st.text())
def test_reply_text_cannot_break_out_of_its_tags(line: str) -> None:
    from wasmrun import Result, RunStats

    result = Result(
        code="",
        stdout=line,
        stderr="",
        value=None,
        error=None,
        stats=RunStats(duration_s=0, fuel_used=0, memory_bytes=None),
    )
    text = reply(result, "xml")
    assert text.count("</output>") == (1 if line.splitlines() else 0)
    assert text.count("<status>") == 1


# -- images ----------------------------------------------------------------------------
def test_an_image_file_the_code_writes_comes_back_as_image_content(server: SandboxServer) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    code = f"import base64\nopen('dot.png', 'wb').write(base64.b64decode({png!r}))"
    result = call(server, "run_code", {"code": code, "files": {"seed.txt": "x"}})
    assert not result.is_error, text_of(result)
    images = [block for block in result.content if isinstance(block, types.ImageContent)]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data).startswith(b"\x89PNG")
    assert result.structured_content is not None and result.structured_content["images"] == ["dot.png"]


def test_a_matplotlib_chart_comes_back_as_png_image_content() -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.bar(['north', 'south'], [120.5, 98.25])\nplt.title('Q3')\nplt.show()\n'done'"
    )
    try:
        sci = SandboxServer(image="scientific", limits=Limits(timeout_s=120), prewarm=0)
    except ImageError as exc:
        pytest.skip(f"the scientific image is not available ({exc}); run `wasmrun image install scientific`")
    with sci:
        result = call(sci, "run_code", {"code": code})
    assert not result.is_error, text_of(result)
    images = [block for block in result.content if isinstance(block, types.ImageContent)]
    assert len(images) >= 1
    assert all(block.mime_type == "image/png" for block in images)
    assert base64.b64decode(images[0].data).startswith(b"\x89PNG\r\n\x1a\n")
    assert result.structured_content is not None and result.structured_content["images"]


# -- transports: a real server process --------------------------------------------------------
def server_env(audit: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    if audit is not None:
        env["WASMRUN_TEST_AUDIT"] = str(audit)
    return env


def test_stdio_round_trip_with_a_hostile_run_in_between(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    params = StdioServerParameters(
        command=sys.executable,
        args=[*WASMRUN_MCP[1:], "--tools", "mcp_registry:registry", "--timeout", "3"],
        env=server_env(audit),
        cwd=str(ROOT),
    )

    async def go() -> None:
        with anyio.fail_after(120):
            async with mcp.Client(params) as client:
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert names == {"run_code", "run_code_in_session", "run_python_code", "revenue"}
                hostile = await client.call_tool("run_code", {"code": "while True: pass"})
                assert hostile.is_error
                assert hostile.structured_content is None or hostile.structured_content["error"]["kind"] == "timeout"
                assert json.loads(text_of(hostile))["error"]["kind"] == "timeout"
                ok = await client.call_tool("run_code", {"code": "import tools\ntools.revenue('south')['revenue']"})
                assert not ok.is_error, text_of(ok)
                assert ok.structured_content is not None and ok.structured_content["value"] == "98.25"
                direct = await client.call_tool("revenue", {"region": "north"})
                assert json.loads(text_of(direct))["revenue"] == 120.5

                # concurrent calls (a second one runs in a worker process): replies stay matched, stdout clean
                values: dict[int, str] = {}

                async def one(i: int) -> None:
                    reply = await client.call_tool("run_code", {"code": f"import time\ntime.sleep(0.3)\n{i} * {i}"})
                    values[i] = json.loads(text_of(reply))["value"]

                async with anyio.create_task_group() as group:
                    for i in range(4):
                        group.start_soon(one, i)
                assert values == {i: str(i * i) for i in range(4)}

    anyio.run(go)
    assert [r["source"] for r in mcp_registry_audit(audit)] == ["guest", "model"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the server did not listen on port {port} within {timeout_s:g}s")


def test_streamable_http_round_trip() -> None:
    port = free_port()
    options = ["--timeout", "3", "--tools", "mcp_registry:registry", "--return-mode", "json"]
    process = subprocess.Popen(
        [*WASMRUN_MCP, "--http", f"127.0.0.1:{port}", *options],
        env=server_env(),
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, process)

        async def go() -> None:
            with anyio.fail_after(120):
                async with mcp.Client(f"http://127.0.0.1:{port}/mcp") as client:
                    names = {tool.name for tool in (await client.list_tools()).tools}
                    assert names == {"run_code", "run_code_in_session", "run_python_code", "revenue"}
                    result = await client.call_tool("run_code", {"code": "print('over http')\n2 ** 10"})
                    assert not result.is_error, text_of(result)
                    assert result.structured_content is not None
                    assert (result.structured_content["stdout"], result.structured_content["value"]) == (
                        "over http\n",
                        "1024",
                    )
                    hostile = await client.call_tool("run_code", {"code": "import time\ntime.sleep(60)"})
                    assert json.loads(text_of(hostile))["error"]["kind"] == "timeout"
                    first = await client.call_tool("run_code_in_session", {"code": "total = 40"})
                    token = json.loads(text_of(first))["session"]
                    more = await client.call_tool("run_code_in_session", {"code": "total + 2", "session": token})
                    assert json.loads(text_of(more))["value"] == "42"
                    dropin = await client.call_tool("run_python_code", {"python_code": "[1, 2]"})
                    assert json.loads(text_of(dropin)) == {"status": "success", "output": [], "return_value": [1, 2]}

        anyio.run(go)

        # code mode against the same server over HTTP: its tools in a local registry, called from guest code
        with McpConnection(f"http://127.0.0.1:{port}/mcp", connect_timeout_s=60) as remote:
            registry = ToolRegistry()
            assert remote.register(registry, include=["revenue"]) == {"revenue": "revenue"}
            local = wasmrun.run("import tools\ntools.revenue('north')['revenue']", tools=registry)
            assert local.value == "120.5", local.error
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def test_bad_command_line_options_exit_with_a_clear_message() -> None:
    for args, message in [
        (["--http", "localhost"], "HOST:PORT"),
        (["--timeout", "-1"], "timeout_s"),
        (["--tools", "nope"], "module:attribute"),
    ]:
        done = subprocess.run(
            [*WASMRUN_MCP, *args],
            env=server_env(),
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
