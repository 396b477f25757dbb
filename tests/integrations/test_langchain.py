"""The LangChain adapter, through langchain-core's own tool-call path and fake chat model (no mocks)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import requires_scientific
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

import wasmrun
from wasmrun.integrations.langchain import registry_tools, run_code_tool


def tool_call(code: Any, call_id: str, **extra: Any) -> dict[str, Any]:
    return {"name": "run_code", "args": {"code": code, **extra}, "id": call_id, "type": "tool_call"}


def drive(tool: BaseTool, replies: list[AIMessage]) -> list[BaseMessage]:
    """A minimal tool-calling loop: the chat model's tool calls are invoked and their ToolMessages appended."""
    model = GenericFakeChatModel(messages=iter(replies))
    messages: list[BaseMessage] = [HumanMessage("go")]
    while True:
        reply = model.invoke(messages)
        messages.append(reply)
        if not isinstance(reply, AIMessage) or not reply.tool_calls:
            return messages
        messages.extend(tool.invoke(call) for call in reply.tool_calls)


def test_scripted_chat_model_runs_code_that_calls_host_tools(
    tool_sandbox: wasmrun.Sandbox, tool_ledger: list[tuple[str, dict[str, object]]]
) -> None:
    before = len(tool_ledger)
    tool = run_code_tool(tool_sandbox)
    messages = drive(
        tool,
        [
            AIMessage("", tool_calls=[tool_call("import tools\nprint(tools.add(a=20, b=22))", "c1")]),
            AIMessage("", tool_calls=[tool_call("undefined_name", "c2")]),
            AIMessage("The answer is 42."),
        ],
    )

    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.tool_call_id for m in results] == ["c1", "c2"]
    assert json.loads(str(results[0].content)) == {"ok": True, "stdout": "42\n", "tool_calls": 1}
    failed = json.loads(str(results[1].content))
    assert (failed["ok"], failed["error"]["type"], failed["error"]["code_line"]) == (
        False,
        "NameError",
        "undefined_name",
    )
    assert messages[-1].content == "The answer is 42."
    assert tool_ledger[before:] == [("add", {"a": 20, "b": 22})]


def test_the_schema_a_chat_model_is_given(tool_sandbox: wasmrun.Sandbox) -> None:
    definition = convert_to_openai_tool(run_code_tool(tool_sandbox, limits=wasmrun.Limits(timeout_s=3)))

    assert definition["function"]["name"] == "run_code"
    assert definition["function"]["parameters"]["required"] == ["code"]
    assert definition["function"]["parameters"]["additionalProperties"] is False
    description = definition["function"]["description"]
    assert "import tools" in description and "add, fail" in description and "at most 3 s" in description


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [({"script": "print(1)"}, "code: Field required"), ({"code": 7}, "code: Input should be a valid string")],
)
def test_malformed_calls_are_answered_not_raised(
    tool_sandbox: wasmrun.Sandbox, arguments: dict[str, Any], problem: str
) -> None:
    message = run_code_tool(tool_sandbox).invoke(
        {"name": "run_code", "args": arguments, "id": "x", "type": "tool_call"}
    )

    content = json.loads(str(message.content))
    assert content["error"]["kind"] == "invalid_arguments"
    assert problem in content["error"]["message"]


def test_limits_hold_and_async_invocation_works(tool_sandbox: wasmrun.Sandbox) -> None:
    tool = run_code_tool(tool_sandbox, limits=wasmrun.Limits(timeout_s=0.5, memory_bytes=64 * 2**20))

    async def both() -> list[Any]:
        return await asyncio.gather(
            tool.ainvoke({"code": "import time\ntime.sleep(30)"}), tool.ainvoke({"code": "6*7"})
        )

    slept, answered = (json.loads(text) for text in asyncio.run(both()))
    assert slept["error"]["kind"] == "timeout"
    assert answered == {"ok": True, "value": "42"}
    hog = json.loads(tool.invoke({"code": "x = bytearray(200 * 2**20)"}))
    assert hog["error"]["kind"] == "memory"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(code=st.text(max_size=200))
def test_any_model_text_comes_back_as_a_result(tool_sandbox: wasmrun.Sandbox, code: str) -> None:
    message = run_code_tool(tool_sandbox).invoke(tool_call(code, "h"))

    content = json.loads(str(message.content))
    assert isinstance(content["ok"], bool)
    assert content["ok"] or content["error"]["kind"] != "internal"  # any failure is the code's, told as text


def test_on_result_gets_the_files_the_model_only_hears_about(tool_sandbox: wasmrun.Sandbox) -> None:
    results: list[wasmrun.Result] = []
    tool = run_code_tool(tool_sandbox, on_result=results.append)

    content = json.loads(tool.invoke({"code": "with open('chart.svg', 'w') as f:\n    f.write('<svg/>')"}))
    assert content["files"] == {"chart.svg": 6}  # the model hears of the file ...
    [result] = results
    assert result.files == {"chart.svg": b"<svg/>"}  # ... the host gets its bytes
    tool.invoke({"script": "not a call"})
    assert len(results) == 1  # a malformed call ran nothing, so there is no Result to report


@requires_scientific
def test_the_model_is_told_what_the_image_has() -> None:
    with wasmrun.Sandbox(prewarm=0) as plain, wasmrun.Sandbox(image="scientific", prewarm=0) as scientific:
        assert "Only the Python standard library" in run_code_tool(plain).description
        told = run_code_tool(scientific).description
        assert "pandas" in told and "matplotlib" in told and "only the python standard library" not in told.lower()
        assert "scipy" in run_code_tool(scientific, environment="numpy and scipy only").description


def test_registry_tools_answer_every_call_with_text(tool_sandbox: wasmrun.Sandbox) -> None:
    context = wasmrun.RunContext()
    by_name = {tool.name: tool for tool in registry_tools(tool_sandbox, context=context)}
    assert sorted(by_name) == ["add", "fail"]
    assert convert_to_openai_tool(by_name["add"])["function"]["parameters"]["required"] == ["a", "b"]

    ok = by_name["add"].invoke({"name": "add", "args": {"a": 1, "b": 2}, "id": "t1", "type": "tool_call"})
    bad = by_name["add"].invoke({"name": "add", "args": {"a": 1}, "id": "t2", "type": "tool_call"})
    assert isinstance(ok, ToolMessage) and json.loads(str(ok.content)) == {"ok": True, "result": 3}
    assert json.loads(str(bad.content))["outcome"] == "invalid"
    assert [record.outcome for record in context.records] == ["ok", "invalid"]
    with pytest.raises(TypeError, match="without a registry"), wasmrun.Sandbox(prewarm=0) as bare:
        registry_tools(bare)
