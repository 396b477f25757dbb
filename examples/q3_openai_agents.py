"""The seed question through the OpenAI Agents SDK, offline: wasmrun as an agent's function tool.

"Pull our Q3 sales data and create a chart showing monthly revenue by region, highlighting any
months where we missed target."

An Agents SDK `Agent` gets wasmrun's ``run_code`` `FunctionTool` and the registry's own tools
(`wasmrun.integrations.openai_agents`) over a `wasmrun.Sandbox` whose registry holds the seed's
SQLite tools. The SDK's own `ScriptedModel` replays the recorded seed conversation
(`wasmrun.agent.seed`: a direct ``get_targets`` call, a failing pandas attempt, the working
program), and `Runner` runs the real agent loop. Tracing is off, so
nothing leaves the machine; the chart lands in ``--out``. No network, no API key.

    python examples/q3_openai_agents.py [--image scientific] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agents import Agent, RunConfig, Runner
from agents.items import ToolCallItem, ToolCallOutputItem
from agents.testing import ScriptedModel, assistant_message, function_call

import wasmrun
from wasmrun.agent.seed import (
    SEED_INSTRUCTIONS,
    SEED_TASK,
    recorded_conversation,
    sales_database,
    save_artifacts,
    seed_registry,
)
from wasmrun.integrations.openai_agents import registry_tools, run_code_tool


def scripted_model(image: str) -> ScriptedModel:
    """The SDK's scripted model: the recorded seed conversation, one model turn per step."""
    steps = []
    for i, said in enumerate(recorded_conversation(image)):
        step = [assistant_message(said["content"], item_id=f"msg_{i}")] if said.get("content") else []
        for call in said.get("tool_calls") or []:
            step.append(function_call(call["function"]["name"], call["function"]["arguments"], call_id=call["id"]))
        steps.append(step)
    return ScriptedModel(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", choices=["default", "scientific"], default="default")
    parser.add_argument("--out", type=Path, default=Path.cwd(), help="where to write the chart")
    args = parser.parse_args()

    charts: dict[str, bytes] = {}
    limits = wasmrun.Limits(timeout_s=60 if args.image == "scientific" else 10)
    with sales_database() as db, wasmrun.Sandbox(tools=seed_registry(db), limits=limits, image=args.image) as sandbox:
        agent = Agent(
            name="analyst",
            instructions=SEED_INSTRUCTIONS,
            model=scripted_model(args.image),
            tools=[
                run_code_tool(sandbox, on_result=lambda result: charts.update(result.files)),
                *registry_tools(sandbox),
            ],
        )
        result = Runner.run_sync(agent, SEED_TASK, run_config=RunConfig(tracing_disabled=True))

    for item in result.new_items:
        if isinstance(item, ToolCallItem):
            print(
                f"model -> {getattr(item.raw_item, 'name', '?')}: {str(getattr(item.raw_item, 'arguments', ''))[:80]}"
            )
        elif isinstance(item, ToolCallOutputItem):
            print(f"tool -> model: {str(item.output)[:300]}")
    written = save_artifacts(charts, args.out)
    print(f"\n{result.final_output}\n\nchart: {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
