"""``wasmrun log show`` and ``wasmrun agent demo``: transcripts rendered as a timeline, the seed demo offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wasmrun import Limits, ToolRegistry
from wasmrun.agent import Agent, ReplayServer, Transcript, call, run_code_call, say
from wasmrun.cli import app

runner = CliRunner(env={"COLUMNS": "200"})  # wide: assertions below do not depend on line wrapping


@pytest.fixture(scope="module")
def transcript(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real transcript: a direct call, failed code, fixed code with a guest call, a denied call, an answer."""
    path = tmp_path_factory.mktemp("log") / "t.jsonl"
    registry = ToolRegistry(policy=lambda c: "no deleting" if c.tool == "drop" else None)

    @registry.tool
    def double(x: int) -> int:
        """Double a number."""
        return 2 * x

    @registry.tool
    def drop(table: str) -> None:
        """Drop a table."""

    script = [
        call("double", {"x": 21}),
        call("drop", {"table": "sales"}),
        run_code_call("import tools\nvalue = tools.double(x=4)\nvalue / 0"),
        run_code_call("import tools\nprint('\\x1b[31mred\\x1b[0m', tools.double(x=4))\n'[bold]plain[/bold]'"),
        say("The answer is 42 [link=http://evil]click[/link]."),
    ]
    with ReplayServer(script) as server, Agent(server.client(), "m", tools=registry, limits=Limits(timeout_s=5)) as a:
        result = a.run("Double 21.", transcript=path)
    assert result.ok, result.answer
    return path


def test_log_show_renders_a_timeline(transcript: Path) -> None:
    result = runner.invoke(app, ["log", "show", str(transcript)])
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in (
        "start",
        "Double 21.",
        "turn 1",
        "[model] double(x=21)",
        "allowed/ok",
        '[model] drop(table="sales")',
        "denied/denied",
        "reason: no deleting",
        "value / 0",  # the code, in full
        "ZeroDivisionError: division by zero",
        "retry",
        "attempt 1 failed (1 of 3 in a row)",
        "[guest] double(x=4)",
        "final",
        "answered; 2 attempts, 5 turns, 2 code runs, 4 tool calls",
    ):
        assert expected in out, expected
    # Untrusted text is shown, not interpreted: no terminal escapes, no rich markup.
    assert "\x1b[31m" not in out and "\\x1b[31mred" in out
    assert "[link=http://evil]click[/link]" in out and "'[bold]plain[/bold]'" in out
    assert "system prompt (" in out and "You are a careful data analyst" not in out


def test_log_show_full(transcript: Path) -> None:
    result = runner.invoke(app, ["log", "show", "--full", str(transcript)])
    assert result.exit_code == 0
    assert "You are a careful data analyst" in result.output  # the system prompt
    assert '"ok":false' in result.output  # tool results as the model saw them


def test_log_show_tolerates_a_truncated_last_line(transcript: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial.jsonl"
    data = transcript.read_bytes()
    partial.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 20])  # cut inside the last event
    result = runner.invoke(app, ["log", "show", str(partial)])
    assert result.exit_code == 0 and "start" in result.output


def test_log_show_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "start"}\nnot json\n{"type": "final"}\n')
    result = runner.invoke(app, ["log", "show", str(bad)])
    assert result.exit_code == 2 and "line 2 is not JSON" in " ".join(result.output.split())
    result = runner.invoke(app, ["log", "show", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2


def test_transcript_survives_unencodable_values(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    with Transcript(path) as log:
        log.event("note", data=b"\x00\x01", when=Path("/x"), obj=object())
    (event,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert event["data"] == "AAE=" and event["when"].endswith("'/x')") and event["seq"] == 1


def test_agent_demo_command(tmp_path: Path) -> None:
    result = runner.invoke(app, ["agent", "demo", "--out", str(tmp_path), "--image", "default"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "q3_revenue_by_region.svg").read_bytes().startswith(b"<svg")
    shown = runner.invoke(app, ["log", "show", str(tmp_path / "agent-demo-transcript.jsonl")])
    assert shown.exit_code == 0 and "No module named 'pandas'" in shown.output


def test_agent_ask_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = runner.invoke(app, ["agent", "ask", "what is 2 + 2?"])
    assert result.exit_code == 2 and "OPENAI_API_KEY" in result.output


def test_agent_ask_against_an_openai_compatible_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The live path (``Agent.from_env``: OPENAI_API_KEY, OPENAI_BASE_URL, WASMRUN_MODEL) against a local server."""
    script = [
        call("get_targets", {"quarter": "Q3"}),
        run_code_call("open('note.txt', 'w').write('hi')\nprint('done')"),
        say("Done: see note.txt."),
    ]
    with ReplayServer(script) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("WASMRUN_MODEL", "local-model")
        args = ["agent", "ask", "Check the Q3 targets", "--sales", "--out", str(tmp_path)]
        result = runner.invoke(app, [*args, "--transcript", str(tmp_path / "t.jsonl")])
    assert result.exit_code == 0, result.output
    assert server.errors == []
    assert server.requests[0]["model"] == "local-model"
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == ["run_code", "query_database", "get_targets"]
    assert (tmp_path / "note.txt").read_text() == "hi"
    assert "Done: see note.txt." in result.output and "get_targets" in result.output


def test_agent_demo_live_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--live`` goes through the same loop; here the "real" endpoint replays the recording."""
    from wasmrun.agent.seed import recorded_conversation

    with ReplayServer(recorded_conversation()) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        result = runner.invoke(app, ["agent", "demo", "--live", "--model", "live-model", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert server.requests[0]["model"] == "live-model" and server.remaining == 0
    assert (tmp_path / "q3_revenue_by_region.svg").exists()
