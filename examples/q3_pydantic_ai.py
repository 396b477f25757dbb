"""The seed question through pydantic-ai, offline: wasmrun as the agent's code tool.

"Pull our Q3 sales data and create a chart showing monthly revenue by region, highlighting any
months where we missed target."

A pydantic-ai `Agent` gets wasmrun's ``run_code`` tool and the registry's own tools
(`wasmrun.integrations.pydantic_ai`) over a `wasmrun.Sandbox` whose registry holds the seed's
SQLite tools (``query_database``, ``get_targets``). pydantic-ai's own `FunctionModel` plays the
model and replays the recorded seed conversation (`wasmrun.agent.seed`) turn by turn: a direct
``get_targets`` call, a pandas attempt (on the default image pandas is missing and the error goes
back to the model; on the scientific image a wrong column name is refused by the tool), then the
working program, which pulls the rows through ``import tools`` and writes the chart. The chart
lands in ``--out`` (default: the current directory). No network, no API key.

    python examples/q3_pydantic_ai.py [--image scientific] [--out DIR]
"""

from __future__ import annotations

from _q3 import q3_sandbox  # the set-up every Q3 example shares (examples/_q3.py)
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from wasmrun.agent.seed import SEED_INSTRUCTIONS, SEED_TASK, recorded_conversation
from wasmrun.integrations.pydantic_ai import code_toolset, registry_tools


def scripted_model(image: str) -> FunctionModel:
    """A FunctionModel that says, turn by turn, what the model said in the recorded seed conversation."""
    recording = recorded_conversation(image)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        said = recording[sum(isinstance(message, ModelResponse) for message in messages)]
        parts: list[TextPart | ToolCallPart] = [TextPart(said["content"])] if said.get("content") else []
        for call in said.get("tool_calls") or []:
            parts.append(ToolCallPart(call["function"]["name"], call["function"]["arguments"], tool_call_id=call["id"]))
        return ModelResponse(parts=parts)

    return FunctionModel(respond)


def main() -> None:
    with q3_sandbox(__doc__) as (example, sandbox):
        agent = Agent(
            scripted_model(example.image),
            instructions=SEED_INSTRUCTIONS,
            toolsets=[code_toolset(sandbox, on_result=example.keep_files)],
            tools=registry_tools(sandbox),
        )
        result = agent.run_sync(SEED_TASK)

    for message in result.all_messages():
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                arguments = part.args_as_dict()
                shown = arguments["code"].splitlines()[0] + " ..." if "code" in arguments else arguments
                print(f"model -> {part.tool_name}: {shown}")
            elif isinstance(part, ToolReturnPart):
                print(f"{part.tool_name} -> model: {str(part.content)[:300]}")
    example.finish(result.output)


if __name__ == "__main__":
    main()
