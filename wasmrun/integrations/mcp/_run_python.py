"""A drop-in for pydantic's mcp-run-python: its ``run_python_code`` tool and its reply.

mcp-run-python (Pyodide in Deno) exposes one tool, ``run_python_code(python_code,
global_variables={})``, and answers with one text block holding
``{status, output, return_value | error}``: as XML tags by default
(``--return-mode xml``) or as a JSON object (``--return-mode json``). ``status``
is ``"success"`` or ``"run-error"``, ``output`` the printed lines and
``return_value`` the JSON value of the last expression.

Where wasmrun cannot match it exactly, the differences are:

* ``output`` lists stdout's lines, then stderr's (wasmrun captures them
  separately, so their interleaving is lost).
* ``return_value`` is rebuilt from the ``repr`` of the last expression: a Python
  literal (numbers, strings, ``None``, booleans, lists, tuples, dicts, sets)
  becomes its JSON value; anything else stays its ``repr`` string.
* ``global_variables`` are set by one line run before the code; line numbers in
  tracebacks are corrected for it.
* No packages are installed on demand: the default image has the standard
  library, ``--image scientific`` numpy, pandas, scipy and matplotlib.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Literal

from wasmrun import Result

ReturnMode = Literal["xml", "json"]

MAX_LITERAL_CHARS = 100_000
"""Longest ``repr`` turned back into a JSON value; a longer one is returned as its text."""

_CODE_LINE = re.compile(r'(File "<code>", line )(\d+)')


def globals_preamble(variables: dict[str, Any]) -> str:
    """The one line that defines `variables` as globals (empty when there are none)."""
    if not variables:
        return ""
    payload = json.dumps(variables, ensure_ascii=True)
    return f"globals().update(__import__('json').loads({payload!r}))\n"


def literal_value(text: str | None) -> Any:
    """The JSON-compatible value behind a ``repr``, or the ``repr`` itself when it is not a plain literal.

    `text` comes from the guest, so it is untrusted: `ast.literal_eval` never
    runs code, and anything it refuses (or that is too long, too deep, or not
    representable in JSON, such as ``nan`` or bytes) comes back as the string.
    """
    if text is None:
        return None
    if len(text) > MAX_LITERAL_CHARS:
        return text
    try:
        value = ast.literal_eval(text)
        return json.loads(json.dumps(_jsonable(value, 0), allow_nan=False))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, OverflowError):
        return text


def _jsonable(value: Any, depth: int) -> Any:
    if depth > 100:
        raise ValueError("nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, depth + 1) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(item, depth + 1) for item in value), key=repr)
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _jsonable(item, depth + 1) for key, item in value.items()}
    raise TypeError(f"{type(value).__name__} has no JSON form")


def error_text(result: Result, line_offset: int = 0) -> str:
    """The error the way Python prints it: the traceback, or ``Type: message`` when there is none."""
    error = result.error
    if error is None:
        return ""
    text = error.traceback or f"{error.type}: {error.message}\n"
    if line_offset:
        text = _CODE_LINE.sub(lambda m: f"{m[1]}{max(1, int(m[2]) - line_offset)}", text)
    if error.kind not in ("exception", "syntax", "tool"):
        text = f"{text.rstrip()} (wasmrun error kind: {error.kind})\n"
    return text


def reply(result: Result, mode: ReturnMode = "xml", *, line_offset: int = 0) -> str:
    """The text mcp-run-python would send for this run."""
    output = [*result.stdout.splitlines(), *result.stderr.splitlines()]
    status = "success" if result.ok else "run-error"
    if mode == "json":
        data: dict[str, Any] = {"status": status, "output": output}
        if result.ok:
            data["return_value"] = literal_value(result.value)
        else:
            data["error"] = error_text(result, line_offset)
        return json.dumps(data)
    parts = [f"<status>{status}</status>"]
    if output:
        parts += ["<output>", *(_escape_closing(line, "output") for line in output), "</output>"]
    if result.ok:
        if result.value is not None:
            value = json.dumps(literal_value(result.value))
            parts += ["<return_value>", _escape_closing(value, "return_value"), "</return_value>"]
    else:
        parts += ["<error>", _escape_closing(error_text(result, line_offset), "error"), "</error>"]
    return "\n".join(parts)


def _escape_closing(text: str, tag: str) -> str:
    """Escape anything in `text` that could open or close `tag`, so the reply's structure holds."""
    pattern = re.compile(rf"</?\s*{tag}(?:.*?>)?", re.IGNORECASE)
    return pattern.sub(lambda m: m[0].replace("<", "&lt;").replace(">", "&gt;"), text)
