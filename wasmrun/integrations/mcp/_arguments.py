"""What MCP clients may send to the server's tools, validated before anything runs.

Everything here is untrusted input: a model (through any MCP client) writes the
arguments. They are validated with pydantic models that forbid unknown keys;
requested limits are clamped to the server's own `wasmrun.Limits`, which are at
once the default and the ceiling for every run.
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic

from wasmrun import Limits

MiB = 1024 * 1024
MIN_MEMORY_MB = 64
"""The smallest memory cap a run may ask for (the interpreter snapshot needs most of it)."""

MAX_INPUT_FILE_BYTES = 16 * MiB
"""Total size of the input files one ``run_code`` call may send (UTF-8 bytes)."""

MAX_GLOBAL_VARIABLES_BYTES = 1 * MiB
"""Largest JSON encoding of ``run_python_code``'s ``global_variables``."""


class LimitsRequest(pydantic.BaseModel):
    """Limits a caller asks for; each is lowered to the server's maximum when above it."""

    model_config = pydantic.ConfigDict(extra="forbid")

    timeout_s: Annotated[pydantic.FiniteFloat, pydantic.Field(gt=0)] | None = pydantic.Field(
        None, description="Wall-clock limit in seconds (at most the server's maximum)."
    )
    memory_mb: Annotated[int, pydantic.Field(ge=MIN_MEMORY_MB)] | None = pydantic.Field(
        None, description=f"Memory cap in MiB (at least {MIN_MEMORY_MB}, at most the server's maximum)."
    )
    fuel: Annotated[int, pydantic.Field(ge=1)] | None = pydantic.Field(
        None, description="CPU budget in wasm instructions (about 1e10 per second of pure-Python work)."
    )
    max_output_bytes: Annotated[int, pydantic.Field(ge=1)] | None = pydantic.Field(
        None, description="Cap on each of stdout and stderr, in bytes."
    )


class RunCodeRequest(pydantic.BaseModel):
    """The arguments of the ``run_code`` MCP tool."""

    model_config = pydantic.ConfigDict(extra="forbid")

    code: str = pydantic.Field(description="The complete Python program to run.")
    files: dict[str, str] | None = pydantic.Field(
        None,
        description="Input files (relative name -> text), readable by the program in its working directory.",
    )
    limits: LimitsRequest | None = pydantic.Field(
        None, description="Lower limits for this run; values above the server's maxima are lowered to them."
    )

    @pydantic.field_validator("files")
    @classmethod
    def _files_fit(cls, files: dict[str, str] | None) -> dict[str, str] | None:
        if files is None:
            return None
        size = 0
        for name, text in files.items():
            if not name or name.startswith("/") or "\0" in name or any(p in ("", ".", "..") for p in name.split("/")):
                raise ValueError(f"file name {name!r} must be a relative path without empty, '.' or '..' parts")
            try:
                size += len(name.encode("utf-8")) + len(text.encode("utf-8"))
            except UnicodeEncodeError:
                raise ValueError(f"file {name!r} is not valid Unicode text (it contains a lone surrogate)") from None
        if size > MAX_INPUT_FILE_BYTES:
            raise ValueError(f"files are {size:,} bytes in total; the limit is {MAX_INPUT_FILE_BYTES:,}")
        return files


class RunCodeInSessionRequest(RunCodeRequest):
    """The arguments of ``run_code_in_session``: those of ``run_code``, the session's token, ``close``."""

    session: Annotated[str, pydantic.Field(min_length=1, max_length=100)] | None = pydantic.Field(
        None, description="The `session` of an earlier reply, to continue in it; omit it to start a new session."
    )
    close: bool = pydantic.Field(False, description="End the session after this call (frees its memory).")


class RunPythonCodeRequest(pydantic.BaseModel):
    """The arguments of ``run_python_code``, as pydantic's mcp-run-python defines them."""

    model_config = pydantic.ConfigDict(extra="forbid")

    python_code: str = pydantic.Field(description="Python code to run")
    global_variables: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="Map of global variables in context when the code is executed"
    )

    @pydantic.field_validator("global_variables")
    @classmethod
    def _names_and_size(cls, variables: dict[str, Any]) -> dict[str, Any]:
        for name in variables:
            if not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(f"global variable name {name!r} is not a Python identifier")
        size = len(pydantic.TypeAdapter(dict[str, Any]).dump_json(variables))
        if size > MAX_GLOBAL_VARIABLES_BYTES:
            raise ValueError(
                f"global_variables are {size:,} bytes as JSON; the limit is {MAX_GLOBAL_VARIABLES_BYTES:,}"
            )
        return variables


@dataclasses.dataclass(frozen=True)
class AppliedLimits:
    """The limits a run gets, and a note for each requested value that was lowered."""

    limits: Limits
    notes: tuple[str, ...]


def apply_limits(maximum: Limits, request: LimitsRequest | None) -> AppliedLimits:
    """`maximum` with the requested values applied, each lowered to the server's value when above it.

    A request can only tighten a run: the server's limits are the default and the ceiling.
    """
    if request is None:
        return AppliedLimits(maximum, ())
    changes: dict[str, Any] = {}
    notes: list[str] = []

    def take(field: str, asked: float | None, ceiling: float, shown_as: str, scale: int = 1) -> None:
        if asked is None:
            return
        if asked * scale > ceiling:
            notes.append(f"{shown_as}={asked:g} is above this server's maximum; lowered to {ceiling / scale:g}")
            return
        changes[field] = type(ceiling)(asked * scale)

    take("timeout_s", request.timeout_s, maximum.timeout_s, "timeout_s")
    take("memory_bytes", request.memory_mb, maximum.memory_bytes, "memory_mb", MiB)
    take("fuel", request.fuel, maximum.fuel, "fuel")
    take("max_output_bytes", request.max_output_bytes, maximum.max_output_bytes, "max_output_bytes")
    return AppliedLimits(dataclasses.replace(maximum, **changes), tuple(notes))


def explain(exc: pydantic.ValidationError) -> str:
    """The first few validation errors as ``path: message; ...`` (no input values echoed back)."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)[:5]
    ]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def limits_summary(limits: Limits) -> Mapping[str, float | int]:
    """The limits a caller can ask for, in the units the ``limits`` argument uses."""
    return {
        "timeout_s": limits.timeout_s,
        "memory_mb": limits.memory_bytes // MiB,
        "fuel": limits.fuel,
        "max_output_bytes": limits.max_output_bytes,
    }
