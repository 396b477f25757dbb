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

import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import openai

from .._runstate import RunState
from ..tools import RunContext, ToolCallRecord
from ._direct_calls import format_tool_call
from ._jsonsafe import scrub, to_json
from ._offline_replay import sandbox_setup
from ._results import (
    AgentError,
    AgentResult,
    CodeRun,
    StopReason,
    ValidationOutcome,
)
from ._run_code import RUN_CODE, RunCode, _RunCodeStep
from ._transcript import Transcript
from ._validation import _ValidationStep

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessage

    from ._agent import Agent


class _Conversation(_RunCodeStep, _ValidationStep):
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
            stateful=agent.stateful,
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
            self.runner.close()
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
            stateful=agent.stateful,
            validation=validation,
            sandbox=sandbox_setup(agent.sandbox, self.runner.files),
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
            content = to_json({"ok": False, "error": f"not run: the conversation stopped. {self.stop_message}"})
        elif name == RUN_CODE:
            content = self._run_code(call_id, arguments)
        else:
            content = self._direct_call(call_id, name, arguments)
        self._add_message("tool", content, purpose="tool_result", tool_call_id=call_id)

    def _direct_call(self, call_id: str, name: str, arguments: str) -> str:
        registry = self.agent.tools
        if registry is None:
            return to_json(
                {"ok": False, "outcome": "invalid", "error": f"no tool named {name!r} (available: run_code)"}
            )
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
        unknown = self.agent.tools is not None and record.tool not in self.agent.tools.tools
        hint = f"{RUN_CODE} is a tool too, for running Python code." if record.outcome != "ok" and unknown else None
        return format_tool_call(record, max_result_chars=self.limits.max_tool_result_chars, hint=hint)

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
