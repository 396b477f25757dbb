"""JSON that never fails: transcripts and model-facing results must survive odd values.

Model output can carry lone surrogates (a JSON ``"\\ud800"`` escape), handlers can
return types msgspec does not know; neither may crash a conversation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec


def _default(obj: Any) -> Any:
    """JSON fallback for values msgspec cannot encode natively (pydantic models, bytes, paths...)."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return f"<{len(obj)} bytes>"
    return repr(obj)


ENCODER = msgspec.json.Encoder(enc_hook=_default)
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def scrub(value: Any, depth: int = 0) -> Any:
    """`value` as JSON-encodable data: lone surrogates (e.g. from a model's ``"\\ud800"``) become U+FFFD."""
    if depth > 100:
        return "<nested too deeply>"
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {scrub(str(k), depth + 1): scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub(_default(value), depth + 1)


def encode_json(value: Any) -> bytes:
    """JSON bytes of `value`; never fails on lone surrogates or unknown types (see `scrub`)."""
    try:
        return ENCODER.encode(value)
    except (UnicodeEncodeError, TypeError, ValueError, OverflowError):
        return ENCODER.encode(scrub(value))


def to_json(value: Any) -> str:
    """`encode_json` as text."""
    return encode_json(value).decode("utf-8")
