"""The seed question through the OpenAI Agents SDK, offline: wasmrun as an agent's function tool.

"Pull our Q3 sales data and create a chart showing monthly revenue by region, highlighting any
months where we missed target."

An Agents SDK `Agent` gets wasmrun's ``run_code`` `FunctionTool`
(`wasmrun.integrations.openai_agents`) over a `wasmrun.Sandbox` whose registry holds the seed's
SQLite tools. The SDK's own `ScriptedModel` plays the model with the code of the recorded seed
conversation (`wasmrun.agent.seed`), and `Runner` runs the real agent loop. Tracing is off, so
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
from wasmrun.agent import RUN_CODE
from wasmrun.agent.seed import (
    SEED_INSTRUCTIONS,
    SEED_TASK,
    recorded_code_turns,
    sales_database,
    save_artifacts,
    seed_registry,
)
from wasmrun.integrations.openai_agents import run_code_tool


def scripted_model(image: str) -> ScriptedModel:
    """The SDK's scripted model: each recorded program as a run_code call, then the recorded answer."""
    turns, answer = recorded_code_turns(image)
    steps = [
        [assistant_message(said, item_id=f"msg_{i}"), function_call(RUN_CODE, {"code": code}, call_id=f"call_{i}")]
        for i, (said, code) in enumerate(turns, 1)
    ]
    return ScriptedModel([*steps, [assistant_message(answer)]])


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
            tools=[run_code_tool(sandbox, on_result=lambda result: charts.update(result.files))],
        )
        result = Runner.run_sync(agent, SEED_TASK, run_config=RunConfig(tracing_disabled=True))

    for item in result.new_items:
        if isinstance(item, ToolCallItem):
            print(f"model -> {RUN_CODE}: {str(item.raw_item.arguments)[:80]} ...")
        elif isinstance(item, ToolCallOutputItem):
            print(f"{RUN_CODE} -> model: {str(item.output)[:300]}")
    written = save_artifacts(charts, args.out)
    print(f"\n{result.final_output}\n\nchart: {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
