"""The seed question through smolagents, offline: wasmrun as a CodeAgent's executor.

"Pull our Q3 sales data and create a chart showing monthly revenue by region, highlighting any
months where we missed target."

A smolagents `CodeAgent` runs its code steps in `wasmrun.integrations.smolagents.WasmrunExecutor`:
one `wasmrun.Session` over a sandbox whose registry holds the seed's SQLite tools (reached as
``import tools``). A scripted model (smolagents' own `Model` interface) writes the code of the
recorded seed conversation (`wasmrun.agent.seed`) as its steps - the pandas attempt, whose error
the agent feeds back, then the working program - and a last step that answers with
``final_answer(...)`` using the ``missed`` variable the previous step left in the session. The
chart lands in ``--out``. No network, no API key.

    python examples/q3_smolagents.py [--image scientific] [--out DIR]
"""

from __future__ import annotations

from typing import Any

from _q3 import q3_sandbox  # the set-up every Q3 example shares (examples/_q3.py)
from smolagents import ChatMessage, CodeAgent, MessageRole, Model

from wasmrun.agent.seed import SEED_INSTRUCTIONS, SEED_TASK, recorded_code_turns
from wasmrun.integrations.smolagents import WasmrunExecutor


class ScriptedModel(Model):  # type: ignore[misc]
    """smolagents' Model interface, answering with the recorded programs as code steps."""

    def __init__(self, image: str) -> None:
        super().__init__(model_id="recorded-seed")
        turns, answer = recorded_code_turns(image)
        # The last step reads `missed` from the session: state carried over from the step before.
        finish = f"print('missed target in:', missed)\nfinal_answer({answer!r})"
        self.steps = [*turns, ("The chart is written; answering.", finish)]

    def generate(self, messages: list[Any], stop_sequences: Any = None, **kwargs: Any) -> ChatMessage:
        said, code = self.steps.pop(0)
        return ChatMessage(role=MessageRole.ASSISTANT, content=f"Thought: {said}\n<code>\n{code}\n</code>")


def main() -> None:
    with q3_sandbox(__doc__) as (example, sandbox):
        executor = WasmrunExecutor(sandbox, on_result=example.keep_files)
        agent = CodeAgent(
            tools=[],
            model=ScriptedModel(example.image),
            executor=executor,
            instructions=SEED_INSTRUCTIONS,
            verbosity_level=-1,
            max_steps=5,
        )
        answer = agent.run(SEED_TASK)
        for step in agent.memory.steps[1:]:
            first_line = (getattr(step, "code_action", None) or "").splitlines()[:1]
            print(f"model -> code: {first_line[0] if first_line else ''} ...")
            print(f"sandbox -> model: {str(step.error or step.observations)[:300]}")
        agent.cleanup()

    example.finish(answer)


if __name__ == "__main__":
    main()
