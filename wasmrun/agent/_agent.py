"""`Agent`: a model with tool calling, a tool registry and ``run_code``; each `Agent.run` is one conversation.

The conversation itself (turns, tool calls, retries, limits) is `_loop._Conversation`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import openai
import pydantic

from .._limits import Limits
from .._runstate import RunState
from .._sandbox import Sandbox
from ..tools import RunContext, Tool, ToolCallRecord, ToolRegistry
from ._loop import _Conversation
from ._results import (
    AgentLimits,
    AgentResult,
    Validator,
)
from ._run_code import DEFAULT_ENVIRONMENT, RUN_CODE

DEFAULT_MODEL = "gpt-4.1-mini"
"""The model `Agent.from_env` uses when ``WASMRUN_MODEL`` is not set."""

_FRESH_RUNS = "- Each run_code call starts from scratch: no variables, imports or files carry over between calls."
_ONE_SESSION = (
    "- All run_code calls of this conversation share one Python session, like a notebook: variables, imports "
    "and files from earlier calls are still there, so build on them instead of loading or recomputing data. "
    "A call stopped by a time or CPU limit is rolled back."
)

DEFAULT_SYSTEM_PROMPT = """\
You are a careful data analyst working with tools.
- Call a tool directly when you need a small piece of external data.
- For any computation, aggregation, or to produce files such as charts, write a complete Python program and \
run it with the run_code tool. Inside run_code, `import tools` gives the same tools as Python functions \
(for example tools.NAME(arg=...)), so large data can be fetched and processed in code without passing \
through the conversation.
- Each run_code call starts from scratch: no variables, imports or files carry over between calls.
- If code fails, read the error and traceback, fix the code and run it again.
- When you are done, reply with your final answer (and no tool call). Base every number in it on tool \
results or code output."""


class _ConversationTools(ToolRegistry):
    """The registry the agent's sandbox sees: calls go to the user's registry, in the conversation's context.

    `Sandbox` gives each run a fresh `RunContext`; the agent wants one for the
    whole conversation (shared budgets, one run id, the conversation's limits),
    so while a conversation is bound on this thread, guest calls are routed
    through it. Unbound, calls behave exactly as with the user's registry.
    """

    def __init__(self, inner: ToolRegistry) -> None:
        super().__init__()
        self.inner = inner
        self._local = threading.local()

    @property
    def tools(self) -> Mapping[str, Tool]:
        return self.inner.tools

    def openai_tools(self) -> list[dict[str, Any]]:
        return self.inner.openai_tools()

    def guest_specs(self) -> list[dict[str, Any]]:
        return self.inner.guest_specs()

    def call(
        self, name: str, arguments: str | bytes | Mapping[str, Any], *, context: RunContext | None = None
    ) -> ToolCallRecord:
        return self.inner.call(name, arguments, context=context)

    def dispatch(self, ctx: RunContext, run: RunState, name: str, args: str) -> tuple[bool, str]:
        conversation: _Conversation | None = getattr(self._local, "conversation", None)
        if conversation is None:
            return self.inner.dispatch(ctx, run, name, args)
        return conversation.guest_call(run, name, args)

    @contextlib.contextmanager
    def bound(self, conversation: _Conversation) -> Iterator[None]:
        previous = getattr(self._local, "conversation", None)
        self._local.conversation = conversation
        try:
            yield
        finally:
            self._local.conversation = previous


class Agent:
    """A model that answers a task with tool calls and sandboxed code, through the real ``openai`` client.

    >>> agent = Agent(openai.OpenAI(), "gpt-4.1-mini", tools=registry)
    >>> result = agent.run("Pull our Q3 sales data and chart monthly revenue by region")
    >>> result.answer, result.files, result.tool_calls

    * `client`: an ``openai.OpenAI`` client; any OpenAI-compatible ``base_url`` works.
    * `tools`: the registered tools the model may call directly and guest code via ``import tools``.
    * `limits`: `wasmrun.Limits` of each code run; `agent_limits`: `AgentLimits` of the conversation.
    * `output_schema`: a pydantic model the final answer (JSON) must satisfy; parsed into ``AgentResult.output``.
    * `validator`: a callable checking each proposed answer (see `Validator`).
    * `review`: one extra model turn (with `review_model`, default `model`) that checks code and output.
    * `system_prompt` replaces `DEFAULT_SYSTEM_PROMPT`; `instructions` are appended to it.
    * `files`: input files every code run sees (read-only) in its working directory.
    * `environment`: what the sandbox offers, told to the model (installed packages).
    * `transcript_dir`: write a JSONL transcript of every conversation there (see ``Agent.run(transcript=)``).
    * `completion_options`: extra arguments for ``chat.completions.create`` (e.g. ``temperature``).
    * `seed`, `deterministic`, `image`, `prewarm`: the code runs' `wasmrun.Sandbox`; the transcript records
      them, so that ``wasmrun log replay`` can re-run the code (exactly, when `deterministic`).
    * `stateful`: ``run_code`` keeps one `wasmrun.Session` per conversation (variables, imports and files
      carry over between its calls; the default system prompt and the tool's description say so, and
      the transcript records each run's ``session_id`` and ``session_call``). Default: a fresh
      interpreter per call.
    """

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        *,
        tools: ToolRegistry | None = None,
        limits: Limits | None = None,
        agent_limits: AgentLimits | None = None,
        output_schema: type[pydantic.BaseModel] | None = None,
        validator: Validator | None = None,
        review: bool = False,
        review_model: str | None = None,
        system_prompt: str | None = None,
        instructions: str | None = None,
        files: Mapping[str, bytes | str] | None = None,
        environment: str = DEFAULT_ENVIRONMENT,
        transcript_dir: str | Path | None = None,
        max_output_chars: int = 4_000,
        completion_options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        prewarm: int = 1,
        image: str = "default",
        stateful: bool = False,
        deterministic: bool = False,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        if tools is not None and not isinstance(tools, ToolRegistry):
            raise TypeError(f"tools must be a wasmrun.ToolRegistry, got {type(tools).__name__}")
        if tools is not None and RUN_CODE in tools.tools:
            raise ValueError(f"the registry has a tool named {RUN_CODE!r}; that name is the agent's code tool")
        if output_schema is not None and not (
            isinstance(output_schema, type) and issubclass(output_schema, pydantic.BaseModel)
        ):
            raise TypeError("output_schema must be a pydantic.BaseModel subclass")
        if validator is not None and not callable(validator):
            raise TypeError("validator must be callable")
        self.client = client
        self.model = model
        self.tools = tools
        self.limits = limits or Limits()
        self.agent_limits = agent_limits or AgentLimits()
        self.output_schema = output_schema
        self.validator = validator
        self.review = review
        self.review_model = review_model or model
        self.system_prompt = system_prompt if system_prompt is not None else DEFAULT_SYSTEM_PROMPT
        self.instructions = instructions
        self.files: dict[str, bytes | str] = dict(files or {})
        self.environment = environment
        self.transcript_dir = Path(transcript_dir) if transcript_dir is not None else None
        self.max_output_chars = max_output_chars
        self.completion_options: dict[str, Any] = dict(completion_options or {})
        self.stateful = bool(stateful)
        self._bridge = _ConversationTools(tools) if tools is not None else None
        self.sandbox = Sandbox(
            limits=self.limits, tools=self._bridge, seed=seed, prewarm=prewarm, image=image, deterministic=deterministic
        )

    @classmethod
    def from_env(cls, *, model: str | None = None, **options: Any) -> Agent:
        """An agent on ``openai.OpenAI()`` (``OPENAI_API_KEY``, optional ``OPENAI_BASE_URL``).

        The model is `model`, else ``$WASMRUN_MODEL``, else `DEFAULT_MODEL`.
        """
        return cls(openai.OpenAI(), model or os.environ.get("WASMRUN_MODEL") or DEFAULT_MODEL, **options)

    def close(self) -> None:
        """Release the sandbox's pre-warmed instances."""
        self.sandbox.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build_system_prompt(self) -> str:
        """The system message: the prompt, the instructions, and the output schema when there is one."""
        prompt = self.system_prompt
        if self.stateful:
            prompt = prompt.replace(_FRESH_RUNS, _ONE_SESSION)
        parts = [prompt]
        if self.instructions:
            parts.append(self.instructions)
        if self.output_schema is not None:
            schema = json.dumps(self.output_schema.model_json_schema(), separators=(",", ":"))
            parts.append(
                "Your final answer must be only a JSON object (no other text) that matches this JSON schema: " + schema
            )
        return "\n\n".join(p for p in parts if p)

    def run(
        self,
        task: str,
        *,
        transcript: str | Path | None = None,
        files: Mapping[str, bytes | str] | None = None,
    ) -> AgentResult:
        """Work on `task` until an accepted answer or a limit; never raises for bad code or bad answers.

        `transcript` is the JSONL file to append this conversation to (default:
        a new file in ``transcript_dir``, or none). `files` replace the agent's
        input files for this conversation. Errors talking to the model (e.g.
        ``openai.APIError``) propagate, after being written to the transcript.
        """
        if not isinstance(task, str) or not task.strip():
            raise ValueError("task must be a non-empty string")
        if transcript is None and self.transcript_dir is not None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            transcript = self.transcript_dir / f"agent-{stamp}-{uuid.uuid4().hex[:6]}.jsonl"
        conversation = _Conversation(self, task, transcript, self.files if files is None else dict(files))
        if self._bridge is None:
            return conversation.run()
        with self._bridge.bound(conversation):
            return conversation.run()
