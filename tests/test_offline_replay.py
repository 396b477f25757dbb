"""Offline replay of an agent transcript (`wasmrun log replay`): re-run each code run, answer tools from the record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from wasmrun.agent import read_transcript, replay_transcript
from wasmrun.agent.seed import replay_seed, sales_database
from wasmrun.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def transcript(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real transcript: the seed demo on the default image (recorded model, real tools and sandbox)."""
    path = tmp_path_factory.mktemp("replay") / "demo.jsonl"
    with sales_database() as db:
        result, server = replay_seed(db_path=db, transcript=path, image="default", deterministic=True, seed=3)
    assert result.ok and not server.errors
    # The conversation really used guest tool calls, so the replay has something to answer.
    assert any(run.tool_calls for run in result.code_runs)
    yield path


def _write(events: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def test_the_transcript_records_how_to_replay(transcript: Path) -> None:
    start = next(e for e in read_transcript(transcript) if e["type"] == "start")
    setup = start["sandbox"]
    assert (setup["image"], setup["deterministic"], setup["seed"]) == ("default", True, 3)
    assert {spec["name"] for spec in setup["tool_specs"]} == {"get_targets", "query_database"}


def test_replay_of_a_real_transcript_matches_without_the_database(transcript: Path) -> None:
    report = replay_transcript(transcript)  # no registry, no database: tool results come from the record
    assert report.deterministic and report.seed == 3
    assert len(report.runs) == 2
    assert report.matched, [(run.index, run.diffs) for run in report.runs]


def test_a_tampered_transcript_reports_the_mismatch_with_a_diff(transcript: Path, tmp_path: Path) -> None:
    events = read_transcript(transcript)
    runs = [e for e in events if e["type"] == "code_run"]
    last = runs[-1]
    last["value"] = (last["value"] or "").replace("Aug", "Oct")
    guest_calls = [e for e in events if e["type"] == "tool_call" and e.get("code_run") == last["index"]]
    guest_calls[0]["arguments"]["quarter"] = "1999-Q1"
    report = replay_transcript(_write(events, tmp_path / "tampered.jsonl"))
    assert not report.matched
    first, second = report.runs
    assert first.matched
    assert not second.matched and second.mismatches == ["value", "tool_calls"]
    assert "-" in second.diffs["value"] and "Oct" in second.diffs["value"] and "Aug" in second.diffs["value"]
    assert '-      "quarter": "1999-Q1"' in second.diffs["tool_calls"]


def test_a_recorded_tool_result_is_what_the_guest_gets(transcript: Path, tmp_path: Path) -> None:
    # Change the recorded result of the first guest call: the replayed run computes from it.
    events = read_transcript(transcript)
    call = next(e for e in events if e["type"] == "tool_call" and e.get("source") == "guest")
    call["outcome"], call["result"], call["error"] = "error", None, "database is down"
    report = replay_transcript(_write(events, tmp_path / "failing-tool.jsonl"))
    run = next(r for r in report.runs if r.index == call["code_run"])
    assert not run.matched and "error" in run.mismatches and "tool_calls" in run.mismatches
    # The guest got the recorded error as tools.ToolError and, not catching it, failed there ...
    assert '+  "kind": "tool"' in run.diffs["error"] and "database is down" in run.diffs["error"]
    # ... so it never made its later calls.
    assert '-    "tool": "get_targets"' in run.diffs["tool_calls"]


def test_cli_replay_exit_codes_and_json(transcript: Path, tmp_path: Path) -> None:
    ok = runner.invoke(app, ["log", "replay", str(transcript)])
    assert ok.exit_code == 0, ok.output
    assert "2 of 2 runs match" in ok.output
    events = read_transcript(transcript)
    next(e for e in events if e["type"] == "code_run")["stdout"] = "something else\n"
    tampered = _write(events, tmp_path / "t.jsonl")
    bad = runner.invoke(app, ["log", "replay", str(tampered), "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert report["matched"] is False
    assert report["runs"][0]["mismatches"] == ["stdout"]
    assert "+something else" not in report["runs"][0]["diffs"]["stdout"]
    assert "-something else" in report["runs"][0]["diffs"]["stdout"]


def test_cli_replay_refuses_a_transcript_without_runs(tmp_path: Path) -> None:
    empty = _write([{"seq": 1, "type": "start", "task": "x"}], tmp_path / "empty.jsonl")
    result = runner.invoke(app, ["log", "replay", str(empty)])
    assert result.exit_code == 2
    assert "no code runs" in result.output


def test_replay_of_a_stateful_conversation_uses_one_session(tmp_path: Path) -> None:
    path = tmp_path / "stateful.jsonl"
    with sales_database() as db:
        result, _ = replay_seed(db_path=db, transcript=path, image="default", stateful=True, deterministic=True)
    assert result.ok
    runs = [e for e in read_transcript(path) if e["type"] == "code_run"]
    assert len({run["session_id"] for run in runs}) == 1
    report = replay_transcript(path)
    assert report.matched, [(run.index, run.diffs) for run in report.runs]
