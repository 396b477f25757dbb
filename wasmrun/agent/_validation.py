"""Validation and review of a proposed final answer: output schema, validator callable, reviewer turn.

`_ValidationStep` is the part of a conversation (`_loop._Conversation`) that
decides whether a final answer is accepted; `parse_output` and `all_of` are
public helpers for the same job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pydantic

from ._jsonsafe import scrub, to_json
from ._results import Candidate, CodeRun, ValidationKind, ValidationOutcome, Validator
from ._run_code import truncate

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessage

    from ..tools import ToolCallRecord
    from ._agent import Agent
    from ._transcript import Transcript

REVIEW_PROMPT = """\
You review the work of a data analyst before the answer goes to the user. You get the task, every \
program the analyst ran with its output, and the proposed answer. Check that the answer addresses the \
whole task, that every claim and number in it is supported by the output shown, and that the code does \
what the answer says it does. Reply with only a JSON object: {"approved": true or false, "problems": \
"what is wrong and how to fix it, or an empty string"}."""


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


class _ValidationStep:
    """Checks a proposed final answer; mixed into the conversation, whose state it reads."""

    agent: Agent
    task: str
    turns: int
    code_runs: list[CodeRun]
    tool_records: list[ToolCallRecord]
    validations: list[ValidationOutcome]
    files: dict[str, bytes]
    transcript: Transcript

    def _request(self, options: dict[str, Any]) -> tuple[ChatCompletionMessage, str | None, float]:
        raise NotImplementedError

    def _log_response(
        self, purpose: str, message: Mapping[str, Any], finish_reason: str | None, duration: float
    ) -> None:
        raise NotImplementedError

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
                shown = to_json(r.result) if r.outcome == "ok" else str(r.error)
                direct.append(f"- {r.tool}({to_json(r.arguments)}) -> {r.outcome}: {truncate(shown, 2_000)}")
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


def all_of(*validators: Validator) -> Validator:
    """One validator running `validators` in order; the first rejection wins."""

    def combined(candidate: Candidate) -> bool | str | None:
        for check in validators:
            verdict = check(candidate)
            if verdict is False or isinstance(verdict, str):
                return verdict
        return True

    return combined
