"""wasmrun.agent against a real local OpenAI-compatible HTTP server, with the real ``openai`` client.

Every test starts a `ReplayServer` (127.0.0.1, ephemeral port) that serves
scripted chat-completion responses, including tool calls, bad code and fixes,
and checks each request the way the real API does (tool-call/tool-message
pairing, strict schemas). Nothing here patches the client.
"""

from __future__ import annotations

import json
import logging
import os
import xml.dom.minidom
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import openai
import pydantic
import pytest
from conftest import requires_scientific

from wasmrun import Limits, ToolCall, ToolRegistry
from wasmrun.agent import (
    RUN_CODE,
    Agent,
    AgentLimits,
    AgentResult,
    Candidate,
    ReplayServer,
    RunCode,
    call,
    calls,
    format_result,
    read_transcript,
    run_code_call,
    say,
    script_from_transcript,
    tool_call,
    truncate,
)
from wasmrun.agent._replay import Step

# --------------------------------------------------------------------------- fixtures


def make_registry(audit: Path | None = None) -> ToolRegistry:
    """Tools for the tests: `add`, `lookup`, and `delete_records`, which the policy always denies."""

    def policy(call: ToolCall) -> bool | str | None:
        if call.tool == "delete_records":
            return "deleting records is not allowed"
        return None

    registry = ToolRegistry(policy=policy, audit=audit)

    @registry.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @registry.tool
    def lookup(key: str) -> dict[str, Any]:
        """Look up a record by key."""
        return {"key": key, "value": len(key)}

    @registry.tool
    def delete_records(table: str) -> int:
        """Delete every record of a table."""
        raise AssertionError("the policy must stop this before the handler runs")

    return registry


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return make_registry()


Runner = Callable[..., tuple[AgentResult, ReplayServer]]


@pytest.fixture
def run_agent(registry: ToolRegistry, tmp_path: Path) -> Iterator[Runner]:
    """Run one conversation against a replay server: ``run_agent(script, task=..., **agent_options)``."""
    agents: list[Agent] = []

    def run(
        script: Sequence[Step],
        *,
        task: str = "Do the task.",
        transcript: Path | None = None,
        tools: ToolRegistry | None = None,
        **options: Any,
    ) -> tuple[AgentResult, ReplayServer]:
        options.setdefault("limits", Limits(timeout_s=5))
        with ReplayServer(script) as server:
            agent = Agent(server.client(), "test-model", tools=tools or registry, prewarm=0, **options)
            agents.append(agent)
            result = agent.run(task, transcript=transcript or tmp_path / "transcript.jsonl")
        assert server.errors == [], server.errors
        return result, server

    yield run
    for agent in agents:
        agent.close()


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


def last_tool_result(request: dict[str, Any]) -> Any:
    return json.loads(tool_messages(request)[-1]["content"])


# --------------------------------------------------------------------------- direct tool calls


def test_direct_tool_call(run_agent: Runner) -> None:
    result, server = run_agent([call("add", {"a": 2, "b": 3}, id="call_add"), say("2 + 3 = 5")])

    assert result.ok and not result.exhausted
    assert result.stop_reason == "answered"
    assert result.answer == "2 + 3 = 5"
    assert result.attempts == 1 and result.failures == 0 and result.turns == 2
    (record,) = result.tool_calls
    assert (record.tool, record.source, record.outcome, record.result) == ("add", "model", "ok", 5)
    assert record.arguments == {"a": 2, "b": 3}
    assert record.run_id == result.run_id  # one RunContext for the whole conversation
    # What the model got back, through the real HTTP round trip:
    tool_message = tool_messages(server.requests[1])[-1]
    assert tool_message["tool_call_id"] == "call_add"
    assert json.loads(tool_message["content"]) == {"ok": True, "result": 5}
    # The tools offered: run_code first, then the registry's tools, all strict.
    offered = {t["function"]["name"]: t["function"] for t in server.requests[0]["tools"]}
    assert list(offered) == [RUN_CODE, "add", "lookup", "delete_records"]
    assert all(f["strict"] for f in offered.values())
    assert offered[RUN_CODE]["parameters"]["properties"]["language"]["enum"] == ["python"]


def test_unknown_tool_and_bad_arguments_are_fed_back(run_agent: Runner) -> None:
    script = [
        calls(tool_call("nope", {}), tool_call("add", {"a": "x", "b": 1}), tool_call("add", "{not json")),
        say("done"),
    ]
    result, server = run_agent(script)
    assert result.ok
    first, second, third = (json.loads(m["content"]) for m in tool_messages(server.requests[1]))
    assert first["ok"] is False and "no tool named 'nope'" in first["error"] and "run_code" in first["hint"]
    assert second["outcome"] == "invalid" and "add: invalid arguments" in second["error"]
    assert third["outcome"] == "invalid"
    assert [(r.tool, r.outcome) for r in result.tool_calls] == [
        ("nope", "invalid"),
        ("add", "invalid"),
        ("add", "invalid"),
    ]


def test_large_direct_result_is_cut_with_a_note(run_agent: Runner) -> None:
    registry = ToolRegistry()

    @registry.tool
    def big() -> list[int]:
        """A large result."""
        return list(range(5_000))

    result, server = run_agent(
        [call("big"), say("ok")], tools=registry, agent_limits=AgentLimits(max_tool_result_chars=500)
    )
    shown = last_tool_result(server.requests[1])
    assert shown["truncated"] is True and len(shown["result_preview"]) == 500
    assert "run_code" in shown["note"]
    assert result.tool_calls[0].result == list(range(5_000))  # the record keeps the whole result


# --------------------------------------------------------------------------- run_code


def test_run_code_success(run_agent: Runner) -> None:
    code = (
        "import tools\n"
        "total = tools.add(a=40, b=2)\n"
        "print('total', total)\n"
        "with open('report.txt', 'w') as f:\n"
        "    f.write(str(total))\n"
        "{'total': total}"
    )
    result, server = run_agent([run_code_call(code, id="call_code"), say("The total is 42.")])

    assert result.ok and result.attempts == 1
    (run,) = result.code_runs
    assert run.ok and run.code == code and run.call_id == "call_code" and run.attempt == 1
    assert run.result.stdout == "total 42\n"
    assert result.files == {"report.txt": b"42"}
    fed_back = last_tool_result(server.requests[1])
    assert fed_back == {
        "ok": True,
        "stdout": "total 42\n",
        "value": "{'total': 42}",
        "files": {"report.txt": 2},
        "tool_calls": 1,
    }
    # The guest's call went through the same registry, in the conversation's context.
    (record,) = run.tool_calls
    assert (record.source, record.tool, record.outcome, record.result) == ("guest", "add", "ok", 42)
    assert record.run_id == result.run_id
    assert result.tool_calls == run.tool_calls


def test_input_files_are_visible_to_every_run(run_agent: Runner) -> None:
    code = "import csv\nrows = list(csv.DictReader(open('sales.csv')))\nsum(float(r['revenue']) for r in rows)"
    script = [run_code_call(code), run_code_call("open('sales.csv').read(3)"), say("3.5")]
    result, server = run_agent(script, files={"sales.csv": "month,revenue\nJul,1.5\nAug,2\n"})
    assert [r.result.value for r in result.code_runs] == ["3.5", "'mon'"]
    assert result.files == {}  # inputs are not artifacts
    description = server.requests[0]["tools"][0]["function"]["description"]
    assert "sales.csv" in description


def test_direct_and_code_calls_share_budgets(run_agent: Runner) -> None:
    registry = ToolRegistry()

    @registry.tool(max_calls=2)
    def ping() -> str:
        """Ping."""
        return "pong"

    code = "import tools\ntry:\n    tools.ping()\n    tools.ping()\nexcept tools.ToolError as e:\n    print(e)"
    result, _ = run_agent([call("ping"), run_code_call(code), say("done")], tools=registry)
    outcomes = [(r.source, r.outcome) for r in result.tool_calls]
    assert outcomes == [("model", "ok"), ("guest", "ok"), ("guest", "denied")]
    assert "budget for ping exhausted" in result.code_runs[0].result.stdout


RETRY_CASES = {
    "syntax": ("def f(:\n    pass", "syntax", "SyntaxError"),
    "exception": ("rows = [1, 2]\ntotal = sum(rows)\nrows[5]", "exception", "IndexError"),
    "timeout": ("import time\ntime.sleep(30)", "timeout", "TimeoutError"),
    "memory": ("blocks = []\nwhile True:\n    blocks.append(bytearray(2**24))", "memory", "MemoryError"),
    "missing module": ("import pandas as pd\npd.DataFrame()", "exception", "ModuleNotFoundError"),
}


@pytest.mark.parametrize("case", list(RETRY_CASES))
def test_retry_after_error_then_success(run_agent: Runner, case: str) -> None:
    bad, kind, error_type = RETRY_CASES[case]
    script = [run_code_call(bad), run_code_call("print(sum([1, 2, 3]))"), say("The sum is 6.")]
    limits = Limits(timeout_s=0.5, memory_bytes=96 * 2**20)
    result, server = run_agent(script, limits=limits)

    assert result.ok and result.answer == "The sum is 6."
    assert result.attempts == 2 and result.failures == 1
    failed, fixed = result.code_runs
    assert failed.result.error is not None
    assert (failed.result.error.kind, failed.result.error.type) == (kind, error_type)
    assert (failed.attempt, fixed.attempt) == (1, 2)
    assert fixed.ok and fixed.result.stdout == "6\n"
    # The model saw the error: kind, type, message, and a hint, in the tool result.
    seen = last_tool_result(server.requests[1])
    assert seen["ok"] is False
    assert seen["error"]["kind"] == kind and seen["error"]["type"] == error_type
    assert seen["error"]["hint"]
    retries = [e for e in result.events if e["type"] == "retry"]
    assert len(retries) == 1 and retries[0]["attempt"] == 1 and retries[0]["max_attempts"] == 3


def test_failure_feedback_points_at_the_models_own_line(run_agent: Runner) -> None:
    code = "def mean(xs):\n    return sum(xs) / len(xs)\n\nprint('before')\nmean([])\n"
    _, server = run_agent([run_code_call(code), run_code_call("print(1)"), say("ok")])
    seen = last_tool_result(server.requests[1])["error"]
    assert seen["type"] == "ZeroDivisionError" and seen["line"] == 2
    assert seen["code_line"] == "return sum(xs) / len(xs)"
    assert 'File "<code>", line 5' in seen["traceback"] and "line 2, in mean" in seen["traceback"]
    assert "wasmrun" not in seen["traceback"]  # no host frames
    assert last_tool_result(server.requests[1])["stdout"] == "before\n"


def test_attempts_exhausted(run_agent: Runner) -> None:
    bad = [run_code_call(f"raise ValueError('bad data {i}')") for i in range(3)]
    script = [*bad, say("I could not compute the total: the data kept failing to parse.")]
    result, server = run_agent(script)

    assert result.exhausted and not result.ok
    assert result.stop_reason == "attempts_exhausted"
    assert result.attempts == 3 and result.failures == 3
    assert [r.ok for r in result.code_runs] == [False, False, False]
    assert result.answer.startswith("I could not compute the total")
    assert "Attempts ran out: 3 attempts in a row failed" in result.answer
    assert "ValueError: bad data 2" in result.answer
    # One wrap-up turn, without tools: the model is told why, and may not call tools.
    wrap_up = server.requests[-1]
    assert wrap_up["tool_choice"] == "none"
    assert "Attempts ran out" in wrap_up["messages"][-1]["content"]
    assert server.remaining == 0
    assert [e["limit"] for e in result.events if e["type"] == "limit"] == ["attempts_exhausted"]


def test_max_attempts_is_configurable_and_success_resets_the_streak(run_agent: Runner) -> None:
    script = [
        run_code_call("1/0"),
        run_code_call("print('ok')"),
        run_code_call("1/0"),
        run_code_call("1/0"),
        say("gave up"),
    ]
    result, _ = run_agent(script, agent_limits=AgentLimits(max_attempts=2))
    assert result.stop_reason == "attempts_exhausted"
    assert result.failures == 3 and len(result.code_runs) == 4  # the success in between reset the streak
    assert "2 attempts in a row failed" in result.answer

    result, _ = run_agent([run_code_call("1/0"), say("gave up")], agent_limits=AgentLimits(max_attempts=1))
    assert result.stop_reason == "attempts_exhausted" and result.attempts == 1


def test_invalid_run_code_arguments_count_as_a_failed_attempt(run_agent: Runner) -> None:
    script = [call(RUN_CODE, '{"code": 42, "language": "python"}'), run_code_call("print(2)"), say("2")]
    result, server = run_agent(script)
    seen = last_tool_result(server.requests[1])
    assert seen["error"]["kind"] == "invalid_arguments" and "code" in seen["error"]["message"]
    assert result.ok and result.attempts == 2 and len(result.code_runs) == 1


# --------------------------------------------------------------------------- validation


class Totals(pydantic.BaseModel):
    total: int
    missed_months: list[str]


def test_schema_validation_failure_then_fix(run_agent: Runner) -> None:
    script = [
        run_code_call("print(40 + 2)"),
        say("The total is 42 and we missed August."),
        say('```json\n{"total": "forty-two", "missed_months": ["Aug"]}\n```'),
        say('{"total": 42, "missed_months": ["Aug"]}'),
    ]
    result, server = run_agent(script, output_schema=Totals)

    assert result.ok and result.output == Totals(total=42, missed_months=["Aug"])
    assert result.attempts == 3 and result.failures == 2
    assert [(v.kind, v.passed) for v in result.validations] == [("schema", False), ("schema", False), ("schema", True)]
    assert "not a JSON object" in result.validations[0].message
    assert "total" in result.validations[1].message
    # The schema is in the system prompt, and each rejection is fed back with it.
    assert '"missed_months"' in server.requests[0]["messages"][0]["content"]
    feedback = server.requests[2]["messages"][-1]
    assert feedback["role"] == "user" and "JSON schema" in feedback["content"]


def test_validator_failure_then_fix(run_agent: Runner) -> None:
    seen: list[Candidate] = []

    def needs_report(candidate: Candidate) -> str | None:
        seen.append(candidate)
        if "report.txt" not in candidate.files:
            return "write the report to report.txt"
        return None

    script = [
        say("Here is the report: 42."),
        run_code_call("open('report.txt', 'w').write('42')"),
        say("The report is in report.txt."),
    ]
    result, server = run_agent(script, validator=needs_report)
    assert result.ok and result.answer == "The report is in report.txt."
    assert [(v.kind, v.passed) for v in result.validations] == [("validator", False), ("validator", True)]
    assert "write the report to report.txt" in server.requests[1]["messages"][-1]["content"]
    assert seen[-1].files == {"report.txt": b"42"} and len(seen[-1].code_runs) == 1


def test_validator_exception_rejects(run_agent: Runner) -> None:
    def strict(candidate: Candidate) -> bool:
        if "42" not in candidate.text:
            raise ValueError("the answer must contain 42")
        return True

    result, _ = run_agent([say("no idea"), say("42")], validator=strict)
    assert result.ok and result.validations[0].message == "ValueError: the answer must contain 42"


def test_review_pass_rejects_then_approves(run_agent: Runner) -> None:
    script = [
        run_code_call("print(sum([10, 20, 30]))"),
        say("The total is 50."),
        say('{"approved": false, "problems": "The output says 60, not 50."}'),
        say("The total is 60."),
        say('{"approved": true, "problems": ""}'),
    ]
    result, server = run_agent(script, review=True)
    assert result.ok and result.answer == "The total is 60."
    assert [(v.kind, v.passed) for v in result.validations] == [("review", False), ("review", True)]
    review_request = server.requests[2]
    assert "tools" not in review_request
    reviewed = review_request["messages"][-1]["content"]
    assert "print(sum([10, 20, 30]))" in reviewed and '"stdout":"60\\n"' in reviewed
    assert "The total is 50." in reviewed
    assert "The output says 60, not 50." in server.requests[3]["messages"][-1]["content"]
    assert result.attempts == 2 and result.turns == 5


def test_validation_exhausted_keeps_the_last_answer_with_a_note(run_agent: Runner) -> None:
    result, server = run_agent([say("a"), say("b"), say("c")], output_schema=Totals)
    assert result.stop_reason == "attempts_exhausted" and result.output is None
    assert result.answer.startswith("c\n\nNote: Attempts ran out")
    assert len(server.requests) == 3  # no wrap-up turn: the last answer is the answer


def test_empty_answer_is_a_failed_attempt(run_agent: Runner) -> None:
    result, _ = run_agent([say(""), say("42")])
    assert result.ok and result.answer == "42" and result.validations[0].kind == "empty"


# --------------------------------------------------------------------------- policy


def test_tool_denied_by_policy(tmp_path: Path, run_agent: Runner) -> None:
    audit = tmp_path / "audit.jsonl"
    code = "import tools\ntools.delete_records(table='sales')"
    script = [
        call("delete_records", {"table": "sales"}),
        run_code_call(code),
        say("I am not allowed to delete the sales records."),
    ]
    result, server = run_agent(script, tools=make_registry(audit))

    assert result.ok
    direct, guest = result.tool_calls
    for record in (direct, guest):
        assert (record.decision, record.outcome) == ("denied", "denied")
        assert record.reason == "deleting records is not allowed"
    assert (direct.source, guest.source) == ("model", "guest")
    seen = last_tool_result(server.requests[1])
    assert seen == {
        "ok": False,
        "outcome": "denied",
        "error": "delete_records: denied: deleting records is not allowed",
        "reason": "deleting records is not allowed",
    }
    error = result.code_runs[0].result.error
    assert error is not None and error.kind == "tool" and "deleting records is not allowed" in error.message
    assert last_tool_result(server.requests[2])["error"]["kind"] == "tool"
    # The registry's audit log has both, the guest's with the code that made it.
    logged = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["source"], e["outcome"], e["code"]) for e in logged] == [
        ("model", "denied", None),
        ("guest", "denied", code),
    ]


# --------------------------------------------------------------------------- conversation limits


def test_max_turns(run_agent: Runner) -> None:
    script = [call("add", {"a": 1, "b": i}) for i in range(3)] + [say("Partial: I only got three sums.")]
    result, server = run_agent(script, agent_limits=AgentLimits(max_turns=3))
    assert result.stop_reason == "max_turns" and result.exhausted
    assert result.answer.startswith("Partial") and "AgentLimits.max_turns" in result.answer
    assert server.requests[-1]["tool_choice"] == "none" and len(server.requests) == 4


def test_max_tool_calls_covers_direct_and_guest_calls(run_agent: Runner) -> None:
    code = "import tools\nfor i in range(10):\n    tools.add(a=i, b=i)"
    script = [call("add", {"a": 1, "b": 1}), run_code_call(code), say("stopped")]
    result, _ = run_agent(script, agent_limits=AgentLimits(max_tool_calls=4))
    assert result.stop_reason == "max_tool_calls"
    assert [r.outcome for r in result.tool_calls] == ["ok", "ok", "ok", "ok", "denied"]
    assert "tool-call budget is exhausted" in str(result.tool_calls[-1].reason)
    assert "AgentLimits.max_tool_calls" in result.answer


def test_total_sandbox_time(run_agent: Runner) -> None:
    script = [
        run_code_call("import time\ntime.sleep(0.2)\nprint('slept')"),
        run_code_call("import time\ntime.sleep(30)"),
        say("I ran out of time."),
    ]
    result, _ = run_agent(script, agent_limits=AgentLimits(max_sandbox_s=1.0))
    assert result.stop_reason == "sandbox_time"
    first, second = result.code_runs
    assert first.ok
    assert second.result.error is not None and second.result.error.kind == "timeout"
    assert second.result.stats.duration_s < 1.0  # its deadline was cut to what was left of the budget
    assert 0.99 <= result.sandbox_time_s < 1.5
    assert "AgentLimits.max_sandbox_s" in result.answer


def test_parallel_calls_after_a_stop_are_answered_as_not_run(run_agent: Runner) -> None:
    script = [
        calls(tool_call(RUN_CODE, {"code": "1/0", "language": "python"}), tool_call("add", {"a": 1, "b": 2})),
        say("stopped"),
    ]
    result, server = run_agent(script, agent_limits=AgentLimits(max_attempts=1))
    assert result.stop_reason == "attempts_exhausted"
    skipped = json.loads(tool_messages(server.requests[1])[1]["content"])
    assert skipped["ok"] is False and skipped["error"].startswith("not run")
    assert result.tool_calls == ()


# --------------------------------------------------------------------------- transcript and logging


SCENARIO_CODE = [
    "import tools\nvalues = [tools.lookup(key=k)['value'] for k in ('a', 'bb', 'ccc')]\nprint(values)\nvalues[3]",
    "import tools\nvalues = [tools.lookup(key=k)['value'] for k in ('a', 'bb', 'ccc')]\nprint(sum(values))",
]


def test_transcript_contains_every_code_string_and_tool_call(
    run_agent: Runner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.jsonl"
    script = [
        call("lookup", {"key": "zz"}),
        run_code_call(SCENARIO_CODE[0]),
        run_code_call(SCENARIO_CODE[1]),
        say("The sum is 6."),
        say('{"approved": true, "problems": ""}'),
    ]
    with caplog.at_level(logging.INFO, logger="wasmrun.agent"):
        result, _ = run_agent(script, transcript=path, review=True)
    assert result.ok and result.transcript_path == path

    events = read_transcript(path)
    assert events == list(result.events)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "start" and events[-1]["type"] == "final"
    # every generated code string, in full, with its outcome
    code_runs = [e for e in events if e["type"] == "code_run"]
    assert [e["code"] for e in code_runs] == SCENARIO_CODE
    assert [e["ok"] for e in code_runs] == [False, True]
    assert code_runs[0]["stdout"] == "[1, 2, 3]\n" and code_runs[0]["error"]["type"] == "IndexError"
    assert code_runs[1]["stdout"] == "6\n"
    # every tool call: arguments, decision, outcome, result, timing, and where it came from
    logged_calls = [e for e in events if e["type"] == "tool_call"]
    assert len(logged_calls) == len(result.tool_calls) == 7
    for event, record in zip(logged_calls, result.tool_calls, strict=True):
        assert (event["tool"], event["source"], event["arguments"]) == (record.tool, record.source, record.arguments)
        assert (event["decision"], event["outcome"], event["result"]) == (
            record.decision,
            record.outcome,
            record.result,
        )
        assert event["duration_s"] >= 0 and event["started_at"] > 0
    assert logged_calls[0]["call_id"] and [e.get("code_run") for e in logged_calls[1:]] == [1, 1, 1, 2, 2, 2]
    # model turns (including the review), retries, validation, the final answer
    responses = [e for e in events if e["type"] == "model_response"]
    assert [e["purpose"] for e in responses] == ["main", "main", "main", "main", "review"]
    sent_code = [
        json.loads(c["arguments"])["code"]
        for e in responses
        for c in e["message"]["tool_calls"]
        if c["name"] == RUN_CODE
    ]
    assert sent_code == SCENARIO_CODE
    assert [e["type"] for e in events].count("retry") == 1
    assert [(e["kind"], e["passed"]) for e in events if e["type"] == "validation"] == [("review", True)]
    assert events[-1]["answer"] == "The sum is 6." and events[-1]["attempts"] == 2
    # and the same story on the logger
    messages = [r.getMessage() for r in caplog.records if r.name == "wasmrun.agent"]
    assert any("code run #1" in m and "IndexError" in m for m in messages)
    assert any(m.startswith("retry: attempt 1 failed") for m in messages)
    assert any(m.startswith("final (answered") for m in messages)


def test_replay_a_recorded_transcript(run_agent: Runner, tmp_path: Path) -> None:
    first, _ = run_agent(
        [call("lookup", {"key": "abc"}), run_code_call("print(1)"), say("one")], transcript=tmp_path / "a.jsonl"
    )
    script = script_from_transcript(tmp_path / "a.jsonl")
    again, _ = run_agent(script, transcript=tmp_path / "b.jsonl")
    assert again.answer == first.answer
    assert [r.code for r in again.code_runs] == [r.code for r in first.code_runs]
    assert [(r.tool, r.arguments) for r in again.tool_calls] == [(r.tool, r.arguments) for r in first.tool_calls]


def test_api_errors_propagate_and_are_logged(run_agent: Runner, tmp_path: Path) -> None:
    path = tmp_path / "err.jsonl"
    with ReplayServer([call("add", {"a": 1, "b": 2})]) as server, Agent(server.client(), "m", prewarm=0) as agent:
        with pytest.raises(openai.InternalServerError, match="replay script exhausted"):
            agent.run("task", transcript=path)
    events = read_transcript(path)
    assert events[-1]["type"] == "error" and "replay script exhausted" in events[-1]["message"]


# --------------------------------------------------------------------------- the replay server itself


def test_replay_server_refuses_what_the_api_refuses() -> None:
    with ReplayServer([say("never")]) as server:
        client = server.client()
        dangling = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [tool_call("add", {"a": 1})]},
            {"role": "user", "content": "well?"},
        ]
        with pytest.raises(openai.BadRequestError, match="must be followed by tool messages"):
            client.chat.completions.create(model="m", messages=dangling)
        orphan = [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "x", "content": "1"}]
        with pytest.raises(openai.BadRequestError, match="must be a response to a preceding message"):
            client.chat.completions.create(model="m", messages=orphan)
        loose = {
            "type": "function",
            "function": {"name": "f", "strict": True, "parameters": {"type": "object", "properties": {"a": {}}}},
        }
        with pytest.raises(openai.BadRequestError, match="additionalProperties"):
            client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                tools=[loose],
            )
        assert server.requests == [] and len(server.errors) == 3
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "never" and reply.choices[0].finish_reason == "stop"


def test_replay_server_dynamic_steps() -> None:
    def echo(body: dict[str, Any]) -> dict[str, Any]:
        return say(f"you said {body['messages'][-1]['content']}")

    with ReplayServer([echo]) as server:
        reply = server.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == "you said hello"


# --------------------------------------------------------------------------- run_code tool pieces


def test_run_code_tool_on_its_own(registry: ToolRegistry) -> None:
    from wasmrun import Sandbox

    with Sandbox(tools=registry, limits=Limits(timeout_s=5), prewarm=0) as sandbox:
        tool = RunCode(sandbox, files={"data.csv": "a,b\n1,2\n"}, max_output_chars=200)
        definition = tool.definition()
        assert definition["function"]["name"] == RUN_CODE and definition["function"]["strict"] is True
        description = definition["function"]["description"]
        assert "import tools" in description and "add, delete_records, lookup" in description
        assert "data.csv" in description

        outcome = tool.handle('{"code": "print(open(\'data.csv\').read() * 100)", "language": "python"}')
        assert outcome.ok and outcome.result is not None
        shown = json.loads(outcome.content)
        assert "characters truncated" in shown["stdout"] and len(shown["stdout"]) < 300

        outcome = tool.handle({"code": "x = 1"})
        assert json.loads(outcome.content)["note"].startswith("The code ran but printed nothing")

        outcome = tool.handle('{"language": "python"}')
        assert outcome.result is None and outcome.code is None and "code" in str(outcome.problem)


def test_truncate_keeps_head_and_tail() -> None:
    text = "".join(f"line {i}\n" for i in range(1000))
    cut = truncate(text, 300)
    assert cut.startswith("line 0\n") and cut.endswith("line 999\n")
    assert "characters truncated" in cut and len(cut) < 360
    assert truncate("short", 300) == "short"


def test_format_result_for_output_limit(registry: ToolRegistry) -> None:
    from wasmrun import Sandbox

    limits = Limits(max_output_bytes=10_000)
    with Sandbox(limits=limits, prewarm=0) as sandbox:
        result = sandbox.run("while True: print('spam' * 50)")
    shown = msgspec.json.decode(format_result(result, limits=limits))
    assert shown["error"]["kind"] == "output_limit" and "print summaries" in shown["error"]["hint"]
    assert "characters truncated" in shown["stdout"]


# --------------------------------------------------------------------------- the seed example


def test_seed_example_offline(tmp_path: Path) -> None:
    from wasmrun.agent.seed import CHART_FILE, FINAL_ANSWER, SEED_TASK, replay_seed, sales_database

    transcript = tmp_path / "seed.jsonl"
    with sales_database(tmp_path) as db_path:
        result, server = replay_seed(db_path=db_path, transcript=transcript)

    assert server.errors == [] and server.remaining == 0
    assert result.ok and result.answer == FINAL_ANSWER
    assert result.attempts == 2  # pandas is not in the default image; the model fell back to the stdlib
    first, second = result.code_runs
    assert first.result.error is not None and first.result.error.type == "ModuleNotFoundError"
    assert second.ok
    # Direct call for the targets, then the code pulled sales and targets through `import tools`.
    assert [(r.source, r.tool) for r in result.tool_calls] == [
        ("model", "get_targets"),
        ("guest", "query_database"),
        ("guest", "get_targets"),
    ]
    assert all(r.outcome == "ok" for r in result.tool_calls)
    assert len(result.tool_calls[1].result) == 300
    # The chart: an SVG with a bar per month and region, and the missed months highlighted.
    chart = result.files[CHART_FILE].decode()
    document = xml.dom.minidom.parseString(chart)
    assert document.documentElement is not None and document.documentElement.tagName == "svg"
    assert chart.count("MISSED") == 2 and chart.count(">met ") == 1
    # The recorded answer still matches the data (fails if the seed database changes).
    value = second.result.value
    assert value is not None
    summary = eval(value, {})  # the repr of a dict of str/float/list, made by our own recorded code
    assert summary["missed_months"] == ["Aug", "Sep"]
    for month, total in summary["totals"].items():
        assert f"${total:,.0f}" in FINAL_ANSWER, (month, total)
    for month, target in summary["targets"].items():
        assert f"${target:,.0f}" in FINAL_ANSWER, (month, target)
    # The transcript tells the whole story.
    events = read_transcript(transcript)
    assert events[0]["task"] == SEED_TASK
    assert [e["code"] for e in events if e["type"] == "code_run"] == [r.code for r in result.code_runs]


def test_demo_command_writes_chart_and_transcript(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wasmrun.agent import demo

    assert demo.main(["--out", str(tmp_path), "--image", "default"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [demo.TRANSCRIPT_NAME, "q3_revenue_by_region.svg"]
    out = capsys.readouterr().out
    for expected in ("import pandas as pd", "ModuleNotFoundError", "query_database", "get_targets", "August"):
        assert expected in out


@pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="needs OPENAI_API_KEY (a real model)")
def test_seed_example_live(tmp_path: Path) -> None:
    """The seed task against a real model (OPENAI_API_KEY, optional OPENAI_BASE_URL and WASMRUN_MODEL)."""
    from wasmrun.agent import DEFAULT_MODEL
    from wasmrun.agent.seed import run_seed, sales_database

    with sales_database(tmp_path) as db_path:
        result = run_seed(
            openai.OpenAI(),
            os.environ.get("WASMRUN_MODEL") or DEFAULT_MODEL,
            db_path=db_path,
            transcript=tmp_path / "live.jsonl",
        )
    assert result.ok, result.answer
    assert any(name.endswith((".svg", ".png")) for name in result.files)
    assert "Aug" in result.answer or "August" in result.answer


def test_lone_surrogates_from_the_model_do_not_break_the_conversation(run_agent: Runner, tmp_path: Path) -> None:
    script = [
        run_code_call("print('\ud800')", content="thinking \udfff"),
        call("lookup", {"key": "\ud834"}),
        say("done \ud800"),
    ]
    result, server = run_agent(script, transcript=tmp_path / "s.jsonl")
    assert result.ok and result.answer == "done \ufffd"  # scrubbed when the model's message arrived
    # Escaped surrogates in arguments are refused as invalid arguments, and fed back as such.
    assert result.code_runs == () and result.failures == 1
    assert last_tool_result(server.requests[1])["error"]["kind"] == "invalid_arguments"
    assert result.tool_calls[0].outcome == "invalid" and "surrogates" in str(result.tool_calls[0].error)
    assert len(read_transcript(tmp_path / "s.jsonl")) == len(result.events)
    assert result.events[-1]["answer"] == "done \ufffd"


@requires_scientific
def test_seed_replay_with_pandas_and_matplotlib_makes_a_png(tmp_path: Path) -> None:
    from wasmrun.agent.seed import SCIENTIFIC_CHART_FILE, replay_seed, sales_database

    with sales_database(tmp_path) as db_path:
        result, server = replay_seed(db_path=db_path, transcript=tmp_path / "t.jsonl", image="scientific")
    assert not server.errors
    assert result.ok, result.answer
    first, second = result.code_runs
    assert first.result.error is not None and first.result.error.kind == "tool"  # wrong column, fed back
    assert second.result.ok, second.result.error
    assert "'missed_months': ['Aug', 'Sep']" in (second.result.value or "")
    png = result.files[SCIENTIFIC_CHART_FILE]
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert SCIENTIFIC_CHART_FILE in result.answer


# --------------------------------------------------------------------------- stateful run_code


def test_stateful_run_code_keeps_variables_and_says_so(run_agent: Runner, tmp_path: Path) -> None:
    transcript = tmp_path / "stateful.jsonl"
    script = [
        run_code_call("import tools\nrows = [tools.add(a=1, b=i) for i in range(3)]\nlen(rows)"),
        run_code_call("sum(rows)"),
        say("The sum is 6."),
    ]
    result, server = run_agent(script, transcript=transcript, stateful=True, files={"in.txt": "x"})
    assert result.ok, result.answer
    first, second = result.code_runs
    assert (first.result.value, second.result.value) == ("3", "6")
    assert first.result.stats.session_id is not None
    assert first.result.stats.session_id == second.result.stats.session_id
    assert (first.result.stats.session_call, second.result.stats.session_call) == (1, 2)
    system = server.requests[0]["messages"][0]["content"]
    assert "share one Python session" in system and "starts from scratch" not in system
    description = server.requests[0]["tools"][0]["function"]["description"]
    assert "persist between calls" in description
    runs = [e for e in read_transcript(transcript) if e["type"] == "code_run"]
    sid = first.result.stats.session_id
    assert [(e["session_id"], e["session_call"]) for e in runs] == [(sid, 1), (sid, 2)]


def test_stateless_run_code_is_the_default(run_agent: Runner, tmp_path: Path) -> None:
    script = [run_code_call("rows = [1]"), run_code_call("rows"), say("no rows")]
    result, server = run_agent(script, transcript=tmp_path / "t.jsonl", agent_limits=AgentLimits(max_attempts=3))
    assert result.code_runs[1].result.error is not None
    assert result.code_runs[1].result.error.type == "NameError"
    assert result.code_runs[0].result.stats.session_id is None
    assert "starts from scratch" in server.requests[0]["messages"][0]["content"]


def test_stateful_rollback_and_a_new_session_are_told_to_the_model(run_agent: Runner) -> None:
    script = [
        run_code_call("x = 1"),
        run_code_call("x = 2\nwhile True:\n    pass"),
        run_code_call("x"),
        run_code_call("blocks = []\nwhile True:\n    blocks.append(bytearray(8 * 1024 * 1024))"),
        run_code_call("'x' in globals()"),
        say("done"),
    ]
    result, server = run_agent(
        script,
        stateful=True,
        limits=Limits(timeout_s=1, memory_bytes=96 * 1024 * 1024),
        agent_limits=AgentLimits(max_attempts=5),
    )
    values = [r.result.value for r in result.code_runs]
    assert values[2] == "1"  # the timed-out call was rolled back
    assert values[4] == "False"  # a new session after the memory trap
    assert "rolled back" in last_tool_result(server.requests[2])["session"]
    assert "session ended" in last_tool_result(server.requests[4])["session"]
    assert "new, empty session" in last_tool_result(server.requests[5])["session"]
    ids = [r.result.stats.session_id for r in result.code_runs]
    assert ids[0] == ids[3] != ids[4]


def test_seed_example_offline_stateful(tmp_path: Path) -> None:
    from wasmrun.agent.seed import FINAL_ANSWER, replay_seed, sales_database

    with sales_database(tmp_path) as db_path:
        result, server = replay_seed(db_path=db_path, transcript=tmp_path / "seed.jsonl", stateful=True)
    assert server.errors == [] and result.ok and result.answer == FINAL_ANSWER
    assert len({r.result.stats.session_id for r in result.code_runs}) == 1
