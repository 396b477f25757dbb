"""The smolagents executor, driven by a CodeAgent with a scripted model through smolagents' own Model interface."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import requires_scientific
from smolagents import ChatMessage, CodeAgent, MessageRole, Model, tool

import wasmrun
from wasmrun.integrations.smolagents import WasmrunExecutionError, WasmrunExecutor

WEATHER: list[str] = []


@tool
def weather(city: str, unit: str | None = None) -> str:
    """The weather in a city.

    Args:
        city: the city's name.
        unit: "C" or "F" (default "C").
    """
    WEATHER.append(city)
    return f"18 degrees {unit or 'C'} in {city}"


class ScriptedModel(Model):  # type: ignore[misc]
    """smolagents' Model interface, answering with scripted code steps; keeps what it was shown."""

    def __init__(self, *steps: str) -> None:
        super().__init__(model_id="scripted")
        self.steps = list(steps)
        self.prompts: list[str] = []

    def generate(self, messages: list[Any], stop_sequences: Any = None, **kwargs: Any) -> ChatMessage:
        self.prompts.append("\n".join(str(m.content if hasattr(m, "content") else m) for m in messages))
        code = self.steps.pop(0)
        return ChatMessage(role=MessageRole.ASSISTANT, content=f"Thought: next step.\n<code>\n{code}\n</code>")


@pytest.fixture
def sandbox() -> Iterator[wasmrun.Sandbox]:
    """A sandbox of its own per test: the executor adds the agent's tools to its registry."""
    registry = wasmrun.ToolRegistry()

    @registry.tool
    def double(x: int) -> int:
        """Double a number on the host.

        Args:
            x: the number.
        """
        return 2 * x

    with wasmrun.Sandbox(tools=registry, limits=wasmrun.Limits(timeout_s=5), prewarm=0) as sb:
        yield sb


def run_agent(sandbox: wasmrun.Sandbox, *steps: str, **options: Any) -> tuple[Any, CodeAgent, ScriptedModel]:
    model = ScriptedModel(*steps)
    executor = WasmrunExecutor(sandbox, **options)
    agent = CodeAgent(tools=[weather], model=model, executor=executor, verbosity_level=-1, max_steps=len(steps))
    try:
        return agent.run("What now?"), agent, model
    finally:
        agent.cleanup()


def test_steps_share_state_and_call_tools_as_plain_functions(sandbox: wasmrun.Sandbox) -> None:
    WEATHER.clear()
    answer, agent, model = run_agent(
        sandbox,
        "report = weather('Oslo')\nprint(report)\nimport tools\nbase = tools.double(x=20)",
        "total = base + 2\ntotal",
        "final_answer({'total': total, 'report': report})",
    )

    assert answer == {"total": 42, "report": "18 degrees C in Oslo"}
    assert WEATHER == ["Oslo"]  # the smolagents tool ran on the host, once
    first, second = (step for step in agent.memory.steps[1:3])
    assert "18 degrees C in Oslo" in first.observations
    assert "Last output from code snippet:\n42" in second.observations
    assert "18 degrees C in Oslo" in model.prompts[1]  # what the model was shown at the next step


def test_a_failing_step_is_reported_to_the_model_and_the_state_survives(sandbox: wasmrun.Sandbox) -> None:
    answer, agent, model = run_agent(
        sandbox,
        "rows = [3, 4]",
        "rows[5]",
        "while True:\n    pass",
        "final_answer(sum(rows))",
        limits=wasmrun.Limits(timeout_s=0.5),
    )

    assert answer == 7  # `rows` outlived an exception and a timeout (the session rolled back)
    errors = [str(step.error) for step in agent.memory.steps[1:] if getattr(step, "error", None)]
    assert len(errors) == 2
    assert '"type":"IndexError"' in errors[0] and '"code_line":"rows[5]"' in errors[0] and '"hint"' in errors[0]
    assert '"kind":"timeout"' in errors[1]
    assert "IndexError" in model.prompts[2] and '"kind":"timeout"' in model.prompts[3]


def test_an_answer_that_is_not_json_arrives_as_its_repr(sandbox: wasmrun.Sandbox) -> None:
    answer, _, _ = run_agent(sandbox, "final_answer({3, 1, 2})")
    assert answer == "{1, 2, 3}"


def test_variables_are_sent_into_the_guest(sandbox: wasmrun.Sandbox) -> None:
    model = ScriptedModel("final_answer(limit * 2)")
    agent = CodeAgent(tools=[], model=model, executor=WasmrunExecutor(sandbox), verbosity_level=-1)
    assert agent.run("double it", additional_args={"limit": 21}) == 42

    with pytest.raises(ValueError, match="only JSON data"):
        agent.python_executor.send_variables({"when": object()})


def test_a_dead_session_is_replaced_and_the_model_is_told(sandbox: wasmrun.Sandbox) -> None:
    executor = WasmrunExecutor(sandbox, idle_timeout_s=0.3)
    executor.send_tools({})
    assert executor("x = 1\nx").output == "1"
    time.sleep(0.5)
    with pytest.raises(WasmrunExecutionError, match="earlier steps are gone"):
        executor("x")
    with pytest.raises(WasmrunExecutionError, match="NameError"):
        executor("x")  # a new session: the old state is really gone
    assert executor("x = 2\nx").output == "2"
    executor.cleanup()


def test_bad_setups_are_refused(sandbox: wasmrun.Sandbox) -> None:
    with wasmrun.Sandbox(prewarm=0) as bare, pytest.raises(ValueError, match="needs a ToolRegistry"):
        WasmrunExecutor(bare)
    with pytest.raises(ValueError, match="already has a tool named 'double'"):
        WasmrunExecutor(sandbox).send_tools({"double": weather})


@pytest.mark.slow
@requires_scientific
def test_pandas_state_carries_across_steps_on_the_scientific_image() -> None:
    with wasmrun.Sandbox(tools=wasmrun.ToolRegistry(), image="scientific", limits=wasmrun.Limits(timeout_s=60)) as sb:
        answer, agent, _ = run_agent(
            sb,
            "import pandas as pd\ndf = pd.DataFrame({'region': ['N', 'S', 'N'], 'revenue': [1.0, 2.0, 3.5]})",
            "by_region = df.groupby('region')['revenue'].sum()\nprint(by_region.to_dict())",
            "final_answer(by_region.to_dict())",
        )
    assert answer == {"N": 4.5, "S": 2.0}
    assert "{'N': 4.5, 'S': 2.0}" in agent.memory.steps[2].observations
