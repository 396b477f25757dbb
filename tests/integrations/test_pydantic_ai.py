"""The pydantic-ai adapter, driven by pydantic-ai's own FunctionModel and TestModel (no mocks of pydantic-ai)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import loop_warnings_after
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

import wasmrun
from wasmrun.agent import RunCode
from wasmrun.integrations.pydantic_ai import code_toolset, registry_tools, run_code_tool

pytestmark = pytest.mark.usefixtures("default_event_loop")  # `Agent.run_sync` leaves its loop open (conftest)


def scripted(*programs: str) -> tuple[FunctionModel, list[AgentInfo]]:
    """A model that calls run_code with each program in turn, then answers with the last tool result."""
    seen: list[AgentInfo] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(info)
        step = sum(isinstance(part, ToolReturnPart) for message in messages for part in message.parts)
        if step < len(programs):
            return ModelResponse(parts=[ToolCallPart("run_code", {"code": programs[step]}, tool_call_id=f"c{step}")])
        return ModelResponse(parts=[TextPart("finished")])

    return FunctionModel(respond), seen


def tool_results(messages: list[ModelMessage]) -> list[dict[str, Any]]:
    return [
        json.loads(part.content)
        for message in messages
        for part in message.parts
        if isinstance(part, ToolReturnPart) and part.tool_name == "run_code"
    ]


def test_code_reaches_the_registry_and_the_result_goes_back_to_the_model(
    tool_sandbox: wasmrun.Sandbox, tool_ledger: list[tuple[str, dict[str, object]]]
) -> None:
    model, seen = scripted("import tools\nprint(tools.add(a=2, b=40))\ntools.add(a=1, b=1)")
    before = len(tool_ledger)
    result = Agent(model, toolsets=[code_toolset(tool_sandbox)]).run_sync("add things")

    assert result.output == "finished"
    [outcome] = tool_results(result.all_messages())
    assert outcome == {"ok": True, "stdout": "42\n", "value": "2", "tool_calls": 2}
    assert tool_ledger[before:] == [("add", {"a": 2, "b": 40}), ("add", {"a": 1, "b": 1})]

    [tool] = seen[0].function_tools
    assert tool.name == "run_code"
    assert tool.parameters_json_schema["required"] == ["code"]
    assert "add, fail" in tool.description  # the registry's tools are named for the model
    assert "at most 5 s" in tool.description  # and the sandbox's limit


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("1/0", "exception"),
        ("def broken(:\n", "syntax"),
        ("import tools\ntools.fail(reason='database is down')", "tool"),
        ("while True:\n    pass", "timeout"),
    ],
)
def test_failing_code_comes_back_as_text_not_an_exception(tool_sandbox: wasmrun.Sandbox, code: str, kind: str) -> None:
    model, _ = scripted(code, "print('recovered')")
    tool = run_code_tool(tool_sandbox, limits=wasmrun.Limits(timeout_s=0.5))
    result = Agent(model, tools=[tool]).run_sync("try")

    failed, recovered = tool_results(result.all_messages())
    assert failed["ok"] is False
    assert failed["error"]["kind"] == kind
    assert failed["error"]["hint"]
    if kind == "tool":
        assert "database is down" in failed["error"]["message"]
    assert recovered == {"ok": True, "stdout": "recovered\n"}  # the same sandbox keeps working


def test_pydantic_ais_test_model_can_call_the_tool(tool_sandbox: wasmrun.Sandbox) -> None:
    # TestModel makes up arguments from the tool's JSON schema: the schema must be one it can satisfy.
    result = Agent(TestModel(), toolsets=[code_toolset(tool_sandbox, name="python")]).run_sync("anything")

    returns = [part for message in result.all_messages() for part in message.parts if isinstance(part, ToolReturnPart)]
    assert [part.tool_name for part in returns] == ["python"]
    assert "ok" in json.loads(returns[0].content)


def test_a_ready_run_code_and_its_files_are_used_as_given(tool_sandbox: wasmrun.Sandbox) -> None:
    run_code = RunCode(tool_sandbox, files={"data.csv": "a,b\n1,2\n"})
    model, seen = scripted("open('data.csv').read().splitlines()[1]")
    result = Agent(model, tools=[run_code_tool(run_code)]).run_sync("read")

    assert tool_results(result.all_messages()) == [{"ok": True, "value": "'1,2'"}]
    assert "data.csv" in seen[0].function_tools[0].description


def test_bad_bindings_are_refused(tool_sandbox: wasmrun.Sandbox) -> None:
    with pytest.raises(TypeError, match=r"wasmrun\.Sandbox"):
        run_code_tool("not a sandbox")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="identifier"):
        run_code_tool(tool_sandbox, name="run code")
    with pytest.raises(TypeError, match="on the RunCode itself"):
        run_code_tool(RunCode(tool_sandbox), limits=wasmrun.Limits(timeout_s=1))
    with pytest.raises(TypeError, match=r"unexpected option.* limit; the options are environment, files, limits"):
        run_code_tool(tool_sandbox, limit=wasmrun.Limits(timeout_s=1))  # type: ignore[call-arg]


def test_a_malformed_call_is_answered_with_the_run_code_hint(tool_sandbox: wasmrun.Sandbox) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(part, ToolReturnPart) for message in messages for part in message.parts):
            return ModelResponse(parts=[TextPart("finished")])
        return ModelResponse(parts=[ToolCallPart("run_code", '{"script": "print(1)"}', tool_call_id="bad")])

    result = Agent(FunctionModel(respond), tools=[run_code_tool(tool_sandbox)]).run_sync("go")

    [answer] = tool_results(result.all_messages())
    assert answer["error"]["kind"] == "invalid_arguments"
    assert "code: Field required" in answer["error"]["message"]


def test_registry_tools_are_called_directly_through_the_pipeline(
    tool_registry: wasmrun.ToolRegistry, tool_ledger: list[tuple[str, dict[str, object]]]
) -> None:
    calls = [("add", {"a": 3, "b": 4}), ("add", {"a": "three", "b": 4}), ("fail", {"reason": "db down"})]

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(part, ToolReturnPart) for message in messages for part in message.parts):
            return ModelResponse(parts=[TextPart("finished")])
        return ModelResponse(
            parts=[ToolCallPart(name, args, tool_call_id=f"c{i}") for i, (name, args) in enumerate(calls)]
        )

    context = wasmrun.RunContext()
    before = len(tool_ledger)
    result = Agent(FunctionModel(respond), tools=registry_tools(tool_registry, context=context)).run_sync("go")

    returns = {
        part.tool_call_id: json.loads(part.content)
        for message in result.all_messages()
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    }
    assert returns["c0"] == {"ok": True, "result": 7}
    assert returns["c1"]["outcome"] == "invalid" and "a" in returns["c1"]["error"]  # the registry's validation
    assert returns["c2"]["outcome"] == "error" and "db down" in returns["c2"]["error"]
    assert tool_ledger[before:] == [("add", {"a": 3, "b": 4})]
    assert sorted((r.tool, r.source, r.outcome) for r in context.records) == [
        ("add", "model", "invalid"),
        ("add", "model", "ok"),
        ("fail", "model", "error"),
    ]


def test_the_loop_run_sync_leaves_open_is_closed_with_its_test(tool_sandbox: wasmrun.Sandbox) -> None:
    agent = Agent(TestModel(call_tools=[]), toolsets=[code_toolset(tool_sandbox)])
    assert loop_warnings_after(lambda: agent.run_sync("hi")) == []
