"""wasmrun.agent: a model that calls tools directly and writes code that calls them, in one loop.

The model (any OpenAI-compatible Chat Completions endpoint, through the real
``openai`` client) gets two kinds of tools: the registered tools of a
`wasmrun.ToolRegistry` for external systems, and ``run_code`` for computation in
a fresh `wasmrun.Sandbox`, where ``import tools`` reaches the same registry.
Both paths share one validation/policy/audit pipeline and one `RunContext` per
conversation. Failed code and rejected answers are fed back and retried up to
``AgentLimits.max_attempts``; every event goes to a JSONL transcript and the
``wasmrun.agent`` logger (``wasmrun log show FILE`` renders a transcript).

>>> from wasmrun.agent import Agent
>>> with Agent.from_env(tools=registry) as agent:        # OPENAI_API_KEY, WASMRUN_MODEL
...     result = agent.run("Chart Q3 revenue by region", transcript="q3.jsonl")
>>> result.answer, sorted(result.files), result.attempts

Offline, `ReplayServer` replays a scripted or recorded model conversation over
HTTP on 127.0.0.1 so the same code path runs without a key
(``python -m wasmrun.agent.demo``).
"""

from ._agent import DEFAULT_MODEL, DEFAULT_SYSTEM_PROMPT, Agent
from ._direct_calls import format_tool_call
from ._offline_replay import RecordedTools, ReplayReport, RunReplay, render_replay_report, replay_transcript
from ._replay import (
    ReplayServer,
    RequestError,
    call,
    calls,
    check_chat_request,
    run_code_call,
    say,
    script_from_transcript,
    tool_call,
)
from ._results import (
    AgentError,
    AgentLimits,
    AgentResult,
    Candidate,
    CodeRun,
    StopReason,
    ValidationOutcome,
    Validator,
)
from ._run_code import (
    DEFAULT_ENVIRONMENT,
    RUN_CODE,
    RunCode,
    RunCodeArguments,
    RunCodeOutcome,
    format_result,
    run_code_definition,
    truncate,
)
from ._transcript import Transcript, read_transcript, render_transcript
from ._validation import REVIEW_PROMPT, all_of, parse_output

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "DEFAULT_MODEL",
    "DEFAULT_SYSTEM_PROMPT",
    "REVIEW_PROMPT",
    "RUN_CODE",
    "Agent",
    "AgentError",
    "AgentLimits",
    "AgentResult",
    "Candidate",
    "CodeRun",
    "RecordedTools",
    "ReplayReport",
    "ReplayServer",
    "RequestError",
    "RunCode",
    "RunCodeArguments",
    "RunCodeOutcome",
    "RunReplay",
    "StopReason",
    "Transcript",
    "ValidationOutcome",
    "Validator",
    "all_of",
    "call",
    "calls",
    "check_chat_request",
    "format_result",
    "format_tool_call",
    "parse_output",
    "read_transcript",
    "render_replay_report",
    "render_transcript",
    "replay_transcript",
    "run_code_call",
    "run_code_definition",
    "say",
    "script_from_transcript",
    "tool_call",
    "truncate",
]
