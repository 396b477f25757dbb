"""The agent loop: a model with tool calling, registered tools and ``run_code``, with retries and validation.

One conversation (`Agent.run`) goes like this::

    system prompt + task
    repeat:
        model turn (Chat Completions, tools = run_code + the registry's tools)
        tool calls?  each one runs and its result goes back as a tool message:
            run_code     -> a fresh sandbox run; failed code is fed back and counts as a failed attempt
            other tools  -> ToolRegistry.call (validation, policy, approval, budgets, audit)
        no tool calls: the final answer -> validation (schema, validator, review);
            a failed validation is fed back like an error and counts as a failed attempt
    until the answer passes, attempts run out, or a conversation limit is reached
    (then one last turn without tools asks the model to wrap up, and the answer says why it stopped)

Guest code calls the same tools (``import tools``) through the same registry
and the same `RunContext` as the model's direct calls, so budgets, policies and
the audit log cover the whole conversation.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import openai
import pydantic

from .._errors import WasmrunError
from .._limits import Limits
from .._result import Result
from .._runstate import RunState
from .._sandbox import Sandbox
from ..tools import RunContext, Tool, ToolCallRecord, ToolRegistry
from ._jsonsafe import encode_json, scrub
from ._run_code import DEFAULT_ENVIRONMENT, RUN_CODE, RunCode, explain_invalid, format_result, truncate
from ._transcript import Transcript

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessage

StopReason = Literal["answered", "attempts_exhausted", "max_turns", "max_tool_calls", "sandbox_time"]
"""Why a conversation ended: a validated answer, or the limit that stopped it."""

ValidationKind = Literal["empty", "schema", "validator", "review"]

DEFAULT_MODEL = "gpt-4.1-mini"
"""The model `Agent.from_env` uses when ``WASMRUN_MODEL`` is not set."""

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

REVIEW_PROMPT = """\
You review the work of a data analyst before the answer goes to the user. You get the task, every \
program the analyst ran with its output, and the proposed answer. Check that the answer addresses the \
whole task, that every claim and number in it is supported by the output shown, and that the code does \
what the answer says it does. Reply with only a JSON object: {"approved": true or false, "problems": \
"what is wrong and how to fix it, or an empty string"}."""


class AgentError(WasmrunError):
    """The agent could not talk to the model (e.g. the response had no choices)."""


@dataclass(frozen=True)
class AgentLimits:
    """Limits of one conversation.

    * ``max_attempts``: failed tries in a row (code that failed, or a final
      answer that failed validation) before the agent stops retrying.
    * ``max_turns``: model requests (main turns and review turns); one more
      wrap-up turn without tools may follow when a limit stops the conversation.
    * ``max_tool_calls``: calls of registered tools, by the model directly and by
      guest code together; a call beyond it is denied and ends the conversation.
    * ``max_sandbox_s``: total wall-clock time of all code runs; each run's
      deadline is shortened to what is left.
    * ``max_tool_result_chars``: longest direct tool result shown to the model
      (longer ones are cut, with a note to fetch the data in code instead).
    """

    max_attempts: int = 3
    max_turns: int = 20
    max_tool_calls: int = 50
    max_sandbox_s: float = 120.0
    max_tool_result_chars: int = 20_000

    def __post_init__(self) -> None:
        for name in ("max_attempts", "max_turns", "max_tool_calls", "max_tool_result_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AgentLimits.{name} must be an int >= 1, got {value!r}")
        seconds = self.max_sandbox_s
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 86_400:
            raise ValueError(f"AgentLimits.max_sandbox_s must be a number of seconds in (0, 86400], got {seconds!r}")


@dataclass(frozen=True)
class CodeRun:
    """One ``run_code`` execution: the code in full, the sandbox's result and what the model was shown."""

    index: int
    call_id: str
    turn: int
    attempt: int
    code: str
    result: Result
    tool_calls: tuple[ToolCallRecord, ...]
    feedback: str

    @property
    def ok(self) -> bool:
        """True when the code ran to the end."""
        return self.result.ok


@dataclass(frozen=True)
class ValidationOutcome:
    """The verdict of one validation step on a proposed final answer."""

    kind: ValidationKind
    passed: bool
    message: str


@dataclass(frozen=True)
class Candidate:
    """A proposed final answer, as a validator sees it.

    ``output`` is the parsed object when the agent has an ``output_schema``
    (else None); ``files`` are the artifacts of the successful code runs so far.
    """

    text: str
    output: Any
    code_runs: tuple[CodeRun, ...]
    files: Mapping[str, bytes]


Validator = Callable[[Candidate], "bool | str | None"]
"""Checks a `Candidate`: True/None accept; False or a string (the reason) reject; an exception rejects too."""


@dataclass(frozen=True)
class AgentResult:
    """How a conversation ended, and everything that happened in it.

    * ``answer``: the final answer text; when a limit stopped the conversation
      it ends with a note saying which (``"Note: Attempts ran out: ..."``).
    * ``output``: the parsed ``output_schema`` object (None without a schema or
      when the answer was not accepted).
    * ``attempts``: tries used: every failure (failed code, rejected answer)
      starts a new attempt, so ``attempts == failures + 1`` (1 = everything worked
      the first time), or ``failures`` when attempts ran out.
    * ``code_runs``, ``tool_calls`` (direct and guest, in order), ``validations``.
    * ``files``: artifacts written by successful code runs (a later run's file
      replaces an earlier one of the same name).
    """

    answer: str
    output: Any
    stop_reason: StopReason
    attempts: int
    failures: int
    turns: int
    code_runs: tuple[CodeRun, ...]
    tool_calls: tuple[ToolCallRecord, ...]
    validations: tuple[ValidationOutcome, ...]
    files: Mapping[str, bytes]
    messages: tuple[dict[str, Any], ...]
    events: tuple[dict[str, Any], ...]
    transcript_path: Path | None
    sandbox_time_s: float
    usage: Mapping[str, int]
    run_id: str

    @property
    def ok(self) -> bool:
        """True when the model gave an answer that passed validation."""
        return self.stop_reason == "answered"

    @property
    def exhausted(self) -> bool:
        """True when attempts or a conversation limit ran out before an accepted answer."""
        return self.stop_reason != "answered"


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
        self._bridge = _ConversationTools(tools) if tools is not None else None
        self.sandbox = Sandbox(limits=self.limits, tools=self._bridge, seed=seed, prewarm=prewarm, image=image)

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
        parts = [self.system_prompt]
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


_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)\n?```", re.DOTALL)


def _json_candidates(text: str) -> list[str]:
    """Where a JSON answer may be in `text`: all of it, fenced blocks, the outermost braces."""
    stripped = text.strip()
    found = [stripped]
    found.extend(m.strip() for m in _FENCED.findall(text))
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        found.append(stripped[start : end + 1])
    return list(dict.fromkeys(found))


def parse_output(text: str, schema: type[pydantic.BaseModel]) -> pydantic.BaseModel:
    """`text` (a JSON object, possibly in a code fence or surrounded by prose) validated as `schema`.

    Raises ``ValueError`` saying what is wrong.
    """
    problem = "the answer is not a JSON object"
    for candidate in _json_candidates(text):
        try:
            return schema.model_validate_json(candidate)
        except pydantic.ValidationError as exc:
            if any(err["type"] == "json_invalid" for err in exc.errors()):
                continue
            details = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
                for err in exc.errors(include_url=False)[:8]
            )
            problem = f"the JSON does not match the schema: {details}"
            break
    raise ValueError(problem)


class _Conversation:
    """The state of one `Agent.run`."""

    def __init__(self, agent: Agent, task: str, transcript: str | Path | None, files: Mapping[str, bytes | str]):
        self.agent = agent
        self.task = task
        self.limits = agent.agent_limits
        self.context = RunContext(run_id=f"agent-{uuid.uuid4().hex[:12]}")
        self.transcript = Transcript(transcript)
        self.runner = RunCode(
            agent.sandbox,
            files=files,
            limits=agent.limits,
            environment=agent.environment,
            max_output_chars=agent.max_output_chars,
        )
        tool_defs = [self.runner.definition()]
        if agent.tools is not None:
            tool_defs.extend(agent.tools.openai_tools())
        self.tool_defs = tool_defs
        self.messages: list[dict[str, Any]] = []
        self.code_runs: list[CodeRun] = []
        self.tool_records: list[ToolCallRecord] = []
        self.validations: list[ValidationOutcome] = []
        self.files: dict[str, bytes] = {}
        self.usage: Counter[str] = Counter()
        self.turns = 0
        self.failures_in_a_row = 0
        self.failures = 0
        self.calls_used = 0
        self.sandbox_time = 0.0
        self.stop: StopReason | None = None
        self.stop_message = ""
        self._budget_hit = False

    # -- the loop -----------------------------------------------------------------
    def run(self) -> AgentResult:
        try:
            self._start()
            answer, output = self._loop()
            return self._finish(answer, output)
        except BaseException as exc:
            self.transcript.event("error", message=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.transcript.close()

    def _start(self) -> None:
        agent = self.agent
        validation = {
            "output_schema": agent.output_schema.__name__ if agent.output_schema is not None else None,
            "validator": getattr(agent.validator, "__name__", repr(agent.validator)) if agent.validator else None,
            "review": agent.review,
        }
        self.transcript.event(
            "start",
            run_id=self.context.run_id,
            task=self.task,
            model=agent.model,
            base_url=str(getattr(agent.client, "base_url", "")),
            tools=[d["function"]["name"] for d in self.tool_defs],
            limits=asdict(self.limits),
            run_limits=asdict(agent.limits),
            validation=validation,
        )
        self._add_message("system", self.agent.build_system_prompt(), purpose="system")
        self._add_message("user", self.task, purpose="task")

    def _loop(self) -> tuple[str, Any]:
        while self.stop is None:
            if self.turns >= self.limits.max_turns:
                self._limit("max_turns", f"Stopped after {self.turns} model turns (AgentLimits.max_turns).")
                break
            message = self._complete("main")
            tool_calls = message.get("tool_calls") or []
            if tool_calls:
                for tc in tool_calls:
                    self._handle_tool_call(tc)
                continue
            text = str(message.get("content") or "")
            accepted, output, feedback = self._validate(text)
            if accepted:
                self.stop = "answered"
                return text, output
            self._fail(feedback.splitlines()[0])
            if self.stop == "attempts_exhausted":
                return f"{text.rstrip()}\n\nNote: {self.stop_message}".lstrip(), None
            self._add_message("user", feedback, purpose="validation_feedback")
        return self._wrap_up(), None

    def _complete(self, purpose: Literal["main", "wrap_up"]) -> dict[str, Any]:
        """One model turn; returns the assistant message as appended to the conversation.

        The message is scrubbed (lone surrogates become U+FFFD) so that it can be
        logged and sent back; tool calls are dropped on the wrap-up turn.
        """
        self.turns += 1
        options: dict[str, Any] = {"model": self.agent.model, "messages": self.messages, "tools": self.tool_defs}
        if purpose == "wrap_up":
            options["tool_choice"] = "none"
        options.update(self.agent.completion_options)
        message, finish_reason, duration = self._request(options)
        assistant: dict[str, Any] = {"role": "assistant", "content": message.content}
        calls = [tc for tc in message.tool_calls or [] if purpose == "main"]
        if calls:
            assistant["tool_calls"] = [_tool_call_dict(tc) for tc in calls]
        elif assistant["content"] is None:
            assistant["content"] = message.refusal or ""
        assistant = scrub(assistant)
        self.messages.append(assistant)
        self._log_response(purpose, assistant, finish_reason, duration)
        return assistant

    def _request(self, options: dict[str, Any]) -> tuple[ChatCompletionMessage, str | None, float]:
        started = time.perf_counter()
        response = self.agent.client.chat.completions.create(**options)
        duration = time.perf_counter() - started
        if response.usage is not None:
            self.usage["prompt_tokens"] += response.usage.prompt_tokens
            self.usage["completion_tokens"] += response.usage.completion_tokens
            self.usage["total_tokens"] += response.usage.total_tokens
        if not response.choices:
            raise AgentError("the model's response has no choices")
        choice = response.choices[0]
        return choice.message, choice.finish_reason, duration

    def _log_response(
        self, purpose: str, assistant: Mapping[str, Any], finish_reason: str | None, duration: float
    ) -> None:
        logged = {
            "role": "assistant",
            "content": assistant.get("content"),
            "tool_calls": [
                {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                for c in assistant.get("tool_calls") or []
            ],
        }
        self.transcript.event(
            "model_response",
            turn=self.turns,
            purpose=purpose,
            message=logged,
            finish_reason=finish_reason,
            duration_s=round(duration, 6),
            usage=dict(self.usage),
        )

    def _add_message(self, role: str, content: str, *, purpose: str, tool_call_id: str | None = None) -> None:
        message: dict[str, Any] = {"role": role, "content": content}
        if tool_call_id is not None:
            message["tool_call_id"] = tool_call_id
        self.messages.append(message)
        self.transcript.event("message", purpose=purpose, **message)

    # -- failures and limits ------------------------------------------------------
    def _fail(self, reason: str) -> None:
        self.failures += 1
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= self.limits.max_attempts:
            n = self.limits.max_attempts
            self._limit(
                "attempts_exhausted",
                f"Attempts ran out: {n} attempts in a row failed (AgentLimits.max_attempts = {n}); "
                f"the last one failed with {reason}",
            )
        else:
            self.transcript.event(
                "retry",
                attempt=self.failures,
                in_a_row=self.failures_in_a_row,
                max_attempts=self.limits.max_attempts,
                reason=reason,
            )

    def _limit(self, reason: StopReason, message: str) -> None:
        if self.stop is None:
            self.stop = reason
            self.stop_message = message
            self.transcript.event("limit", limit=reason, message=message)

    def _wrap_up(self) -> str:
        note = self.stop_message
        self._add_message(
            "user",
            f"{note}\nDo not call any more tools. Reply now with your final answer: what you found, what is "
            "missing, and that you had to stop because of this.",
            purpose="wrap_up",
        )
        text = ""
        try:
            text = str(self._complete("wrap_up").get("content") or "").strip()
        except (openai.APIError, AgentError) as exc:
            self.transcript.event("error", message=f"wrap-up turn failed: {type(exc).__name__}: {exc}")
        return f"{text}\n\nNote: {note}" if text else f"Note: {note}"

    # -- tool calls ----------------------------------------------------------------
    def _handle_tool_call(self, tc: Mapping[str, Any]) -> None:
        call_id = str(tc["id"])
        name, arguments = str(tc["function"]["name"]), str(tc["function"]["arguments"])
        if self.stop is not None:
            content = _json({"ok": False, "error": f"not run: the conversation stopped. {self.stop_message}"})
        elif name == RUN_CODE:
            content = self._run_code(call_id, arguments)
        else:
            content = self._direct_call(call_id, name, arguments)
        self._add_message("tool", content, purpose="tool_result", tool_call_id=call_id)

    def _direct_call(self, call_id: str, name: str, arguments: str) -> str:
        registry = self.agent.tools
        if registry is None:
            return _json({"ok": False, "outcome": "invalid", "error": f"no tool named {name!r} (available: run_code)"})
        if self.calls_used >= self.limits.max_tool_calls:
            record = self._budget_denial(name, arguments, "model")
            self.context.records.append(record)
        else:
            self.calls_used += 1
            record = registry.call(name, arguments, context=self.context)
        self._record_tool_call(record, call_id=call_id)
        if self._budget_hit:
            self._limit_tool_calls()
        return self._format_record(record)

    def guest_call(self, run: RunState, name: str, args: str) -> tuple[bool, str]:
        """A tool call from guest code during one of this conversation's runs (on the loop's thread)."""
        registry = self.agent.tools
        assert registry is not None  # only bound when there is a registry
        if self.calls_used >= self.limits.max_tool_calls:
            record = self._budget_denial(name, args, "guest")
            with self.context.lock:
                self.context.records.append(record)
            return False, record.error or "denied"
        self.calls_used += 1
        return registry.dispatch(self.context, run, name, args)

    def _budget_denial(self, name: str, arguments: str, source: Literal["model", "guest"]) -> ToolCallRecord:
        self._budget_hit = True
        reason = f"the conversation's tool-call budget is exhausted ({self.limits.max_tool_calls} calls, AgentLimits)"
        record = ToolCallRecord(
            id=0,
            tool=name,
            source=source,
            run_id=self.context.run_id,
            arguments=arguments[:2_000],
            decision="denied",
            reason=reason,
            outcome="denied",
            error=f"{name}: denied: {reason}",
            started_at=time.time(),
            duration_s=0.0,
        )
        registry = self.agent.tools
        if registry is not None and registry.audit is not None:
            registry.audit.write(record, self.context.code)
        return record

    def _limit_tool_calls(self) -> None:
        self._limit(
            "max_tool_calls",
            f"Stopped: the conversation used all {self.limits.max_tool_calls} tool calls (AgentLimits.max_tool_calls).",
        )

    def _record_tool_call(self, record: ToolCallRecord, **where: Any) -> None:
        self.tool_records.append(record)
        self.transcript.event("tool_call", **msgspec.structs.asdict(record), **where)

    def _format_record(self, record: ToolCallRecord) -> str:
        if record.outcome != "ok":
            out: dict[str, Any] = {"ok": False, "outcome": record.outcome, "error": record.error}
            if record.reason:
                out["reason"] = record.reason
            if self.agent.tools is not None and record.tool not in self.agent.tools.tools:
                out["hint"] = f"{RUN_CODE} is a tool too, for running Python code."
            return _json(out)
        text = _json({"ok": True, "result": record.result})
        limit = self.limits.max_tool_result_chars
        if len(text) <= limit:
            return text
        preview = _json(record.result)[:limit]
        return _json(
            {
                "ok": True,
                "truncated": True,
                "result_preview": preview,
                "note": f"The result is {len(text):,} characters; only the first {limit:,} are shown. "
                "Fetch and process this data inside run_code (import tools) instead.",
            }
        )

    # -- code -----------------------------------------------------------------------
    def _run_code(self, call_id: str, arguments: str) -> str:
        try:
            parsed = RunCode.parse(arguments)
        except pydantic.ValidationError as exc:
            problem = explain_invalid(exc)
            content = _json(
                {
                    "ok": False,
                    "error": {
                        "kind": "invalid_arguments",
                        "message": f"run_code: invalid arguments: {problem}",
                        "hint": 'Call run_code with {"code": "<the whole Python program>", "language": "python"}.',
                    },
                }
            )
            self._fail(f"invalid run_code arguments ({problem})")
            return content
        remaining = self.limits.max_sandbox_s - self.sandbox_time
        if remaining <= 0.001:
            self._limit_sandbox_time()
            return _json({"ok": False, "error": f"not run: {self.stop_message}"})
        limits = self.runner.limits
        if remaining < limits.timeout_s:
            limits = replace(limits, timeout_s=remaining)
        index = len(self.code_runs) + 1
        attempt = self.failures + 1
        first_record = len(self.context.records)
        self.context.code = parsed.code
        try:
            result = self.runner.run(parsed.code, limits=limits)
        finally:
            self.context.code = None
        with self.context.lock:
            guest = tuple(self.context.records[first_record:])
        self.sandbox_time += result.stats.duration_s
        content = format_result(result, limits=limits, tool_calls=guest, max_output_chars=self.agent.max_output_chars)
        self.code_runs.append(
            CodeRun(
                index=index,
                call_id=call_id,
                turn=self.turns,
                attempt=attempt,
                code=parsed.code,
                result=result,
                tool_calls=guest,
                feedback=content,
            )
        )
        error = result.error
        self.transcript.event(
            "code_run",
            index=index,
            call_id=call_id,
            attempt=attempt,
            code=parsed.code,
            ok=result.ok,
            stdout=result.stdout,
            stderr=result.stderr,
            value=result.value,
            error=msgspec.structs.asdict(error) if error is not None else None,
            files={name: len(data) for name, data in result.files.items()},
            duration_s=round(result.stats.duration_s, 6),
            fuel_used=result.stats.fuel_used,
            timeout_s=limits.timeout_s,
            guest_tool_calls=len(guest),
        )
        for record in guest:  # after the run's event, so a timeline reads "the code ran and made these calls"
            self._record_tool_call(record, code_run=index)
        if error is None:
            self.failures_in_a_row = 0
            self.files.update(result.files)
        else:
            self._fail(f"{error.kind} error ({error.type}: {truncate(error.message, 200)})")
        if self.sandbox_time >= self.limits.max_sandbox_s - 0.001:
            self._limit_sandbox_time()
        if self._budget_hit:
            self._limit_tool_calls()
        return content

    def _limit_sandbox_time(self) -> None:
        self._limit(
            "sandbox_time",
            f"Stopped: code ran for {self.sandbox_time:.1f} s in all, the conversation's budget is "
            f"{self.limits.max_sandbox_s:g} s (AgentLimits.max_sandbox_s).",
        )

    # -- validation -------------------------------------------------------------------
    def _check(self, kind: ValidationKind, passed: bool, message: str) -> None:
        self.validations.append(ValidationOutcome(kind=kind, passed=passed, message=message))
        self.transcript.event("validation", kind=kind, passed=passed, message=message)

    def _validate(self, text: str) -> tuple[bool, Any, str]:
        """(accepted, parsed output, feedback for the model when not accepted)."""
        agent = self.agent
        if not text.strip():
            self._check("empty", False, "the reply was empty")
            return False, None, "Your reply was empty. Answer the task, or call a tool to make progress."
        output: Any = None
        if agent.output_schema is not None:
            try:
                output = parse_output(text, agent.output_schema)
            except ValueError as exc:
                self._check("schema", False, str(exc))
                schema = json.dumps(agent.output_schema.model_json_schema(), separators=(",", ":"))
                return (
                    False,
                    None,
                    (
                        f"Your final answer was not accepted: {exc}.\n"
                        f"Reply with only a JSON object that matches this JSON schema: {schema}"
                    ),
                )
            self._check("schema", True, f"matches {agent.output_schema.__name__}")
        if agent.validator is not None:
            candidate = Candidate(text=text, output=output, code_runs=tuple(self.code_runs), files=dict(self.files))
            try:
                verdict = agent.validator(candidate)
            except Exception as exc:  # noqa: BLE001 - a raising validator rejects, with its message
                verdict = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if verdict is False or isinstance(verdict, str):
                reason = verdict if isinstance(verdict, str) else "rejected by the validator"
                self._check("validator", False, reason)
                return False, None, f"Your final answer was not accepted: {reason}\nFix this and answer again."
            self._check("validator", True, "accepted")
        if agent.review:
            approved, problems = self._review(text)
            if not approved:
                self._check("review", False, problems)
                return (
                    False,
                    None,
                    (
                        f"A reviewer rejected your answer: {problems}\nFix the problems (run code again if needed) "
                        "and answer again."
                    ),
                )
        return True, output, ""

    def _review(self, text: str) -> tuple[bool, str]:
        """One extra model turn checking the code, its output and the answer: (approved, problems)."""
        self.turns += 1
        runs: list[str] = []
        budget = 40_000
        for run in reversed(self.code_runs):
            block = (
                f"Program {run.index} ({'succeeded' if run.ok else 'failed'}):\n```python\n{run.code}\n```\n"
                f"Its result: {run.feedback}\n"
            )
            if len(block) > budget:
                break
            budget -= len(block)
            runs.append(block)
        runs.reverse()
        direct = []
        for r in self.tool_records:
            if r.source == "model":
                shown = _json(r.result) if r.outcome == "ok" else str(r.error)
                direct.append(f"- {r.tool}({_json(r.arguments)}) -> {r.outcome}: {truncate(shown, 2_000)}")
        user = (
            f"Task:\n{self.task}\n\n"
            + ("Direct tool calls:\n" + "\n".join(direct) + "\n\n" if direct else "")
            + ("Programs and results:\n" + "\n".join(runs) if runs else "No programs were run.\n")
            + f"\nProposed answer:\n{text}\n\nReply with only the JSON object."
        )
        options: dict[str, Any] = {
            "model": self.agent.review_model,
            "messages": [{"role": "system", "content": REVIEW_PROMPT}, {"role": "user", "content": user}],
        }
        options.update(self.agent.completion_options)
        message, finish_reason, duration = self._request(options)
        reply = str(scrub(message.content or ""))
        self._log_response("review", {"content": reply}, finish_reason, duration)
        for candidate in _json_candidates(reply):
            try:
                verdict = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(verdict, dict) and isinstance(verdict.get("approved"), bool):
                problems = str(verdict.get("problems") or "")
                if verdict["approved"]:
                    self._check("review", True, problems or "approved")
                    return True, problems
                return False, problems or "the reviewer did not approve the answer"
        self._check("review", True, f"inconclusive (the reviewer's reply is not a verdict): {truncate(reply, 200)}")
        return True, ""

    # -- the end ------------------------------------------------------------------------
    def _finish(self, answer: str, output: Any) -> AgentResult:
        stop = self.stop or "answered"
        attempts = self.failures if stop == "attempts_exhausted" else self.failures + 1
        self.transcript.event(
            "final",
            answer=answer,
            output=output,
            stop_reason=stop,
            attempts=attempts,
            failures=self.failures,
            turns=self.turns,
            code_runs=len(self.code_runs),
            tool_calls=len(self.tool_records),
            files=sorted(self.files),
            sandbox_time_s=round(self.sandbox_time, 6),
            usage=dict(self.usage),
        )
        return AgentResult(
            answer=answer,
            output=output,
            stop_reason=stop,
            attempts=attempts,
            failures=self.failures,
            turns=self.turns,
            code_runs=tuple(self.code_runs),
            tool_calls=tuple(self.tool_records),
            validations=tuple(self.validations),
            files=dict(self.files),
            messages=tuple(self.messages),
            events=tuple(self.transcript.events),
            transcript_path=self.transcript.path,
            sandbox_time_s=self.sandbox_time,
            usage=dict(self.usage),
            run_id=self.context.run_id,
        )


def _tool_call_dict(tc: Any) -> dict[str, Any]:
    """An assistant message's tool call, as sent back to the API.

    Only function tools are offered; any other kind of call gets an empty name,
    which is answered as an unknown tool.
    """
    function = getattr(tc, "function", None)
    return {
        "id": str(tc.id),
        "type": "function",
        "function": {
            "name": str(getattr(function, "name", "")),
            "arguments": str(getattr(function, "arguments", "")),
        },
    }


def _json(value: Any) -> str:
    return encode_json(value).decode("utf-8")


def all_of(*validators: Validator) -> Validator:
    """One validator running `validators` in order; the first rejection wins."""

    def combined(candidate: Candidate) -> bool | str | None:
        for check in validators:
            verdict = check(candidate)
            if verdict is False or isinstance(verdict, str):
                return verdict
        return True

    return combined


__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_SYSTEM_PROMPT",
    "REVIEW_PROMPT",
    "Agent",
    "AgentError",
    "AgentLimits",
    "AgentResult",
    "Candidate",
    "CodeRun",
    "StopReason",
    "ValidationOutcome",
    "Validator",
    "all_of",
    "parse_output",
]
