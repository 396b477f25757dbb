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

from _q3 import q3_sandbox  # the set-up every Q3 example shares (examples/_q3.py)
from agents import Agent, RunConfig, Runner
from agents.items import ToolCallItem, ToolCallOutputItem
from agents.testing import ScriptedModel, assistant_message, function_call

from wasmrun.agent.seed import SEED_INSTRUCTIONS, SEED_TASK, recorded_conversation
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
    with q3_sandbox(__doc__) as (example, sandbox):
        agent = Agent(
            name="analyst",
            instructions=SEED_INSTRUCTIONS,
            model=scripted_model(example.image),
            tools=[
                run_code_tool(sandbox, on_result=example.keep_files),
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
    example.finish(result.final_output)


if __name__ == "__main__":
    main()
