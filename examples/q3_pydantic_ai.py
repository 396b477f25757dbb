"""The seed question through pydantic-ai, offline: wasmrun as the agent's code tool.

"Pull our Q3 sales data and create a chart showing monthly revenue by region, highlighting any
months where we missed target."

A pydantic-ai `Agent` gets wasmrun's ``run_code`` tool (`wasmrun.integrations.pydantic_ai`) over a
`wasmrun.Sandbox` whose registry holds the seed's SQLite tools (``query_database``,
``get_targets``). pydantic-ai's own `FunctionModel` plays the model and writes the code of the
recorded seed conversation (`wasmrun.agent.seed`): a pandas attempt first (on the default image
pandas is missing and the error goes back to the model; on the scientific image a wrong column
name is refused by the tool), then the working program, which pulls the rows through
``import tools`` and writes the chart. The chart lands in ``--out`` (default: the current
directory). No network, no API key.

    python examples/q3_pydantic_ai.py [--image scientific] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

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
from wasmrun.integrations.pydantic_ai import code_toolset


def scripted_model(image: str) -> FunctionModel:
    """A FunctionModel that writes the recorded programs one per turn, then gives the recorded answer."""
    turns, answer = recorded_code_turns(image)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if len(done) < len(turns):
            said, code = turns[len(done)]
            return ModelResponse(parts=[TextPart(said), ToolCallPart(RUN_CODE, {"code": code})])
        return ModelResponse(parts=[TextPart(answer)])

    return FunctionModel(respond)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", choices=["default", "scientific"], default="default")
    parser.add_argument("--out", type=Path, default=Path.cwd(), help="where to write the chart")
    args = parser.parse_args()

    charts: dict[str, bytes] = {}
    limits = wasmrun.Limits(timeout_s=60 if args.image == "scientific" else 10)
    with sales_database() as db, wasmrun.Sandbox(tools=seed_registry(db), limits=limits, image=args.image) as sandbox:
        agent = Agent(
            scripted_model(args.image),
            instructions=SEED_INSTRUCTIONS,
            toolsets=[code_toolset(sandbox, on_result=lambda result: charts.update(result.files))],
        )
        result = agent.run_sync(SEED_TASK)

    for message in result.all_messages():
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                code = part.args_as_dict()["code"]
                print(f"model -> {part.tool_name}: {code.splitlines()[0]} ... ({len(code.splitlines())} lines)")
            elif isinstance(part, ToolReturnPart):
                print(f"{part.tool_name} -> model: {str(part.content)[:300]}")
    written = save_artifacts(charts, args.out)
    print(f"\n{result.output}\n\nchart: {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
