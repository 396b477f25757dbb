"""The seed question through LangChain, offline: wasmrun as a LangChain tool.

"Pull our Q3 sales data and create a chart showing monthly revenue by region, highlighting any
months where we missed target."

wasmrun's ``run_code`` `StructuredTool` (`wasmrun.integrations.langchain`) runs over a
`wasmrun.Sandbox` whose registry holds the seed's SQLite tools. langchain-core's
`GenericFakeChatModel` plays the model: its scripted `AIMessage` tool calls carry the code of the
recorded seed conversation (`wasmrun.agent.seed`), and the standard tool-call path
(``tool.invoke(tool_call)`` -> `ToolMessage`) feeds each result back, as a LangChain agent loop
would (with a real model: ``ChatOpenAI(...).bind_tools([tool])`` or ``create_agent``). The chart
lands in ``--out``. No network, no API key.

    python examples/q3_langchain.py [--image scientific] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

import wasmrun
from wasmrun.agent import RUN_CODE
from wasmrun.agent.seed import (
    SEED_INSTRUCTIONS,
    SEED_TASK,
    recorded_code_turns,
    sales_database,
    save_artifacts,
    seed_registry,
)
from wasmrun.integrations.langchain import run_code_tool


def scripted_model(image: str) -> GenericFakeChatModel:
    """A fake chat model that calls run_code with each recorded program, then gives the recorded answer."""
    turns, answer = recorded_code_turns(image)
    replies = [
        AIMessage(said, tool_calls=[{"name": RUN_CODE, "args": {"code": code}, "id": f"call_{i}"}])
        for i, (said, code) in enumerate(turns, 1)
    ]
    return GenericFakeChatModel(messages=iter([*replies, AIMessage(answer)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", choices=["default", "scientific"], default="default")
    parser.add_argument("--out", type=Path, default=Path.cwd(), help="where to write the chart")
    args = parser.parse_args()

    charts: dict[str, bytes] = {}
    limits = wasmrun.Limits(timeout_s=60 if args.image == "scientific" else 10)
    with sales_database() as db, wasmrun.Sandbox(tools=seed_registry(db), limits=limits, image=args.image) as sandbox:
        tool = run_code_tool(sandbox, on_result=lambda result: charts.update(result.files))
        model = scripted_model(args.image)
        messages: list[BaseMessage] = [SystemMessage(SEED_INSTRUCTIONS), HumanMessage(SEED_TASK)]
        while True:  # the tool-calling loop an agent runs
            reply = model.invoke(messages)
            messages.append(reply)
            if not isinstance(reply, AIMessage) or not reply.tool_calls:
                break
            for call in reply.tool_calls:
                print(f"model -> {call['name']}: {call['args']['code'].splitlines()[0]} ...")
                result = tool.invoke(call)
                assert isinstance(result, ToolMessage)
                print(f"{call['name']} -> model: {str(result.content)[:300]}")
                messages.append(result)

    written = save_artifacts(charts, args.out)
    print(f"\n{messages[-1].content}\n\nchart: {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
