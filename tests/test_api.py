"""The exported surface is exactly what the README documents."""

from __future__ import annotations

import re
from pathlib import Path

import wasmrun

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_names() -> set[str]:
    text = README.read_text()
    section = text.split("## Public API", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(\w+)`", section.split(":", 1)[1]))


def test_exports_match_readme() -> None:
    exported = {name for name in wasmrun.__all__ if name != "__version__"}
    assert exported == documented_names()


def test_every_export_exists_and_has_a_docstring() -> None:
    for name in wasmrun.__all__:
        obj = getattr(wasmrun, name)
        if name in ("__version__", "ErrorKind"):
            continue
        assert (obj.__doc__ or "").strip(), f"wasmrun.{name} has no docstring"


def test_exceptions_share_one_root() -> None:
    for exc in (
        wasmrun.ImageError,
        wasmrun.ReentrancyError,
        wasmrun.SandboxClosedError,
        wasmrun.SessionDeadError,
        wasmrun.SnapshotError,
        wasmrun.ToolError,
    ):
        assert issubclass(exc, wasmrun.WasmrunError)
