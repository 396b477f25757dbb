"""The seed question through LangChain, offline: wasmrun as a LangChain tool.

"Pull our Q3 sales data and create a chart showing monthly revenue by region, highlighting any
months where we missed target."

wasmrun's ``run_code`` `StructuredTool` and the registry's own tools
(`wasmrun.integrations.langchain`) run over a `wasmrun.Sandbox` whose registry holds the seed's
SQLite tools. langchain-core's `GenericFakeChatModel` plays the model: its scripted `AIMessage`s
are the recorded seed conversation (`wasmrun.agent.seed`: a direct ``get_targets`` call, a
failing pandas attempt, the working program), and the standard tool-call path
(``tool.invoke(tool_call)`` -> `ToolMessage`) feeds each result back, as a LangChain agent loop
would (with a real model: ``ChatOpenAI(...).bind_tools([tool])`` or ``create_agent``). The chart
lands in ``--out``. No network, no API key.

    python examples/q3_langchain.py [--image scientific] [--out DIR]
"""

from __future__ import annotations

import json

from _q3 import q3_sandbox  # the set-up every Q3 example shares (examples/_q3.py)
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from wasmrun.agent import RUN_CODE
from wasmrun.agent.seed import SEED_INSTRUCTIONS, SEED_TASK, recorded_conversation
from wasmrun.integrations.langchain import registry_tools, run_code_tool


def scripted_model(image: str) -> GenericFakeChatModel:
    """A fake chat model whose replies are the recorded seed conversation, message by message."""
    replies = [
        AIMessage(
            said.get("content") or "",
            tool_calls=[
                {"name": c["function"]["name"], "args": json.loads(c["function"]["arguments"]), "id": c["id"]}
                for c in said.get("tool_calls") or []
            ],
        )
        for said in recorded_conversation(image)
    ]
    return GenericFakeChatModel(messages=iter(replies))


def main() -> None:
    with q3_sandbox(__doc__) as (example, sandbox):
        tools = {tool.name: tool for tool in registry_tools(sandbox)}
        tools[RUN_CODE] = run_code_tool(sandbox, on_result=example.keep_files)
        model = scripted_model(example.image)
        messages: list[BaseMessage] = [SystemMessage(SEED_INSTRUCTIONS), HumanMessage(SEED_TASK)]
        while True:  # the tool-calling loop an agent runs
            reply = model.invoke(messages)
            messages.append(reply)
            if not isinstance(reply, AIMessage) or not reply.tool_calls:
                break
            for call in reply.tool_calls:
                shown = call["args"]["code"].splitlines()[0] + " ..." if call["name"] == RUN_CODE else call["args"]
                print(f"model -> {call['name']}: {shown}")
                result = tools[call["name"]].invoke(call)
                assert isinstance(result, ToolMessage)
                print(f"{call['name']} -> model: {str(result.content)[:300]}")
                messages.append(result)

    example.finish(messages[-1].content)


if __name__ == "__main__":
    main()
