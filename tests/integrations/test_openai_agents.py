"""The OpenAI Agents SDK adapter, driven by the SDK's own ScriptedModel through ``Runner`` (no mocks of the SDK)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agents import Agent, FunctionTool, RunConfig, Runner
from agents.items import ToolCallOutputItem
from agents.testing import ScriptedModel, assistant_message, function_call
from conftest import loop_warnings_after

import wasmrun
from wasmrun.integrations.openai_agents import registry_tools, run_code_tool

OFFLINE = RunConfig(tracing_disabled=True)  # no trace export: the tests never leave the machine

pytestmark = pytest.mark.usefixtures("default_event_loop")  # `Runner.run_sync` leaves its loop open (conftest)


def outputs(result: Any) -> list[dict[str, Any]]:
    return [json.loads(item.output) for item in result.new_items if isinstance(item, ToolCallOutputItem)]


def test_scripted_model_runs_code_that_calls_host_tools(
    tool_sandbox: wasmrun.Sandbox, tool_ledger: list[tuple[str, dict[str, object]]]
) -> None:
    before = len(tool_ledger)
    model = ScriptedModel(
        [
            [
                function_call(
                    "run_code", {"code": "import tools\ntotal = tools.add(a=1, b=2)\ntotal * 10"}, call_id="c1"
                )
            ],
            [function_call("run_code", {"code": "import tools\ntools.fail(reason='quota exceeded')"}, call_id="c2")],
            [assistant_message("30, and the second tool failed")],
        ]
    )
    agent = Agent(name="analyst", model=model, tools=[run_code_tool(tool_sandbox)])
    result = Runner.run_sync(agent, "compute", run_config=OFFLINE)

    model.assert_complete()
    assert result.final_output == "30, and the second tool failed"
    ok, failed = outputs(result)
    assert ok == {"ok": True, "value": "30", "tool_calls": 1}
    assert failed["error"]["kind"] == "tool" and "quota exceeded" in failed["error"]["message"]
    assert tool_ledger[before:] == [("add", {"a": 1, "b": 2})]
    # What the model received: the tool output, as the function_call_output of its own call.
    [sent] = [
        item for item in model.calls[1].input if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]
    assert json.loads(sent["output"]) == ok


def test_the_tool_the_model_sees_is_strict(tool_sandbox: wasmrun.Sandbox) -> None:
    model = ScriptedModel([[assistant_message("nothing to run")]])
    Runner.run_sync(
        Agent(name="a", model=model, tools=[run_code_tool(tool_sandbox, name="python")]), "hi", run_config=OFFLINE
    )

    assert model.first_call is not None
    [tool] = model.first_call.tools
    assert isinstance(tool, FunctionTool) and tool.name == "python"
    assert tool.strict_json_schema and tool.params_json_schema["additionalProperties"] is False
    assert "import tools" in tool.description and "add, fail" in tool.description


@pytest.mark.parametrize(
    ("arguments", "kind"),
    [
        ('{"code": "while True: pass"}', "timeout"),
        ('{"source": "print(1)"}', "invalid_arguments"),
        ("{not json", "invalid_arguments"),
    ],
)
def test_bad_code_and_bad_calls_become_tool_output(tool_sandbox: wasmrun.Sandbox, arguments: str, kind: str) -> None:
    model = ScriptedModel([[function_call("run_code", arguments, call_id="c1")], [assistant_message("ok")]])
    tool = run_code_tool(tool_sandbox, limits=wasmrun.Limits(timeout_s=0.5))
    result = Runner.run_sync(Agent(name="a", model=model, tools=[tool]), "go", run_config=OFFLINE)

    assert result.final_output == "ok"
    [output] = outputs(result)
    assert output["ok"] is False and output["error"]["kind"] == kind


def test_parallel_calls_in_one_turn_run_side_by_side(tool_sandbox: wasmrun.Sandbox) -> None:
    model = ScriptedModel(
        [
            [
                function_call("run_code", {"code": "sum(range(10))"}, call_id="a"),
                function_call("run_code", {"code": "import tools\ntools.add(a=5, b=5)"}, call_id="b"),
            ],
            [assistant_message("both done")],
        ]
    )
    result = Runner.run_sync(
        Agent(name="a", model=model, tools=[run_code_tool(tool_sandbox)]), "go", run_config=OFFLINE
    )

    assert sorted(output["value"] for output in outputs(result)) == ["10", "45"]


def test_registry_tools_next_to_run_code(tool_sandbox: wasmrun.Sandbox) -> None:
    model = ScriptedModel(
        [
            [function_call("add", {"a": 40, "b": 2}, call_id="direct")],
            [function_call("run_code", {"code": "import tools\ntools.add(a=1, b=1)"}, call_id="code")],
            [assistant_message("42 and 2")],
        ]
    )
    tools = [run_code_tool(tool_sandbox), *registry_tools(tool_sandbox)]
    result = Runner.run_sync(Agent(name="a", model=model, tools=tools), "go", run_config=OFFLINE)

    assert outputs(result) == [{"ok": True, "result": 42}, {"ok": True, "value": "2", "tool_calls": 1}]
    add = next(tool for tool in tools if tool.name == "add")
    assert isinstance(add, FunctionTool) and add.strict_json_schema


def test_the_loop_run_sync_leaves_open_is_closed_with_its_test(tool_sandbox: wasmrun.Sandbox) -> None:
    agent = Agent(name="a", model=ScriptedModel([[assistant_message("hi")]]), tools=[run_code_tool(tool_sandbox)])
    assert loop_warnings_after(lambda: Runner.run_sync(agent, "hi", run_config=OFFLINE)) == []
