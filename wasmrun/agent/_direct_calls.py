"""The model-facing text of a model's direct tool call: what wasmrun's `Agent` and the framework adapters send back."""

from __future__ import annotations

from typing import Any

from ..tools import ToolCallRecord
from ._jsonsafe import to_json
from ._run_code import RUN_CODE


def format_tool_call(record: ToolCallRecord, *, max_result_chars: int = 20_000, hint: str | None = None) -> str:
    """The model-facing text of a model's direct tool call (`wasmrun.ToolRegistry.call`), as a JSON object.

    ``{"ok": true, "result": ...}``; a result longer than `max_result_chars`
    becomes a ``result_preview`` with a note to process the data in
    ``run_code`` instead; a failed call is ``{"ok": false, "outcome", "error",
    "reason"?, "hint"?}``.
    """
    if record.outcome != "ok":
        out: dict[str, Any] = {"ok": False, "outcome": record.outcome, "error": record.error}
        if record.reason:
            out["reason"] = record.reason
        if hint:
            out["hint"] = hint
        return to_json(out)
    text = to_json({"ok": True, "result": record.result})
    if len(text) <= max_result_chars:
        return text
    preview = to_json(record.result)[:max_result_chars]
    return to_json(
        {
            "ok": True,
            "truncated": True,
            "result_preview": preview,
            "note": f"The result is {len(text):,} characters; only the first {max_result_chars:,} are shown. "
            f"Fetch and process this data inside {RUN_CODE} (import tools) instead.",
        }
    )
