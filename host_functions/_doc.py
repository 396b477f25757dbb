"""Shared helper: the description a tool's docstring gives the model."""

from collections.abc import Callable
from typing import Any


def tool_description(func: Callable[..., Any]) -> str:
    """The docstring of `func` before its ``Args:`` section: summary and details, each paragraph on one line."""
    doc = (func.__doc__ or "").split("\n\n        Args:", 1)[0]
    return "\n\n".join(" ".join(part.split()) for part in doc.split("\n\n") if part.strip())
