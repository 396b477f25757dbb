"""The tool registry: the only side effects guest code can reach, behind one validation pipeline.

* `_registry`: `ToolRegistry`, `Tool`, `ToolCall`, `RunContext`, `ToolError`, and
  the pipeline every call goes through (decode, validate, policy, approval,
  budgets, handler, result check, audit).
* `_schema`: a tool's JSON schema (OpenAI strict) from its signature and docstring.
* `_handlers`: where handlers run (worker threads with timeouts, inline) and the rate limit.
* `_audit`: `ToolCallRecord` and the JSONL `AuditLog`.

This package depends only on wasmrun's core types (`_errors`, `_runstate`); it
knows nothing of images or sandboxes.
"""

from __future__ import annotations

from ._audit import AuditLog, ToolCallRecord
from ._handlers import in_tool_handler
from ._registry import RunContext, Tool, ToolCall, ToolError, ToolRegistry

__all__ = [
    "AuditLog",
    "RunContext",
    "Tool",
    "ToolCall",
    "ToolCallRecord",
    "ToolError",
    "ToolRegistry",
    "in_tool_handler",
]
