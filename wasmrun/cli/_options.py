"""Options shared by every command that takes them: byte sizes and the run limits, defined once.

A command takes the limits as parameters typed with the aliases below
(`TimeoutOption`, `MemoryOption`, `FuelOption`, `MaxOutputOption`), or with the
option factories when its help text differs (``timeout_option(per=" per
sample")``), and turns them into `Limits` with `build_limits`: a value that
`Limits` refuses is a usage error naming the option.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any, Final

import typer

from .._limits import Limits


class SizeError(ValueError):
    """A size string (such as ``--memory``'s value) could not be parsed."""


_SIZE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    **{
        unit: 1024**power
        for power, prefix in enumerate("kmgt", start=1)
        for unit in (prefix, f"{prefix}b", f"{prefix}ib")
    },
}
_SIZE_RE: Final = re.compile(
    r"\s*(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[a-z]*)\s*",
    re.ASCII | re.IGNORECASE,
)
_MAX_SIZE_DIGITS: Final = 30  # far beyond any real size; keeps int()/Fraction() away from huge inputs


def parse_size(text: str) -> int:
    """Parse a byte size such as ``256M``, ``1G``, ``512MiB``, ``1.5GB`` or ``1048576``.

    Units are case-insensitive and all binary: ``K``/``KB``/``KiB`` mean 1024,
    ``M``/``MB``/``MiB`` 1024**2, likewise ``G`` and ``T``; no unit (or ``B``)
    means bytes. A fraction is allowed when the result is a whole number of bytes.

    Raises `SizeError` (a ``ValueError``) and nothing else for any string.

    >>> parse_size("256M")
    268435456
    >>> parse_size("1.5 GiB")
    1610612736
    """
    if not isinstance(text, str):
        raise SizeError(f"a size must be a string, got {type(text).__name__}")
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise SizeError(f"{text!r} is not a size; use a number of bytes or a number with a unit, e.g. 256M, 1G, 512MiB")
    number, unit = match["number"], match["unit"].lower()
    multiplier = _SIZE_UNITS.get(unit)
    if multiplier is None:
        raise SizeError(f"unknown unit {match['unit']!r} in {text!r}; use B, K, M, G or T (also KB/KiB, MB/MiB, ...)")
    if len(number) > _MAX_SIZE_DIGITS:
        raise SizeError(f"{text!r} is far too large to be a size")
    size = Fraction(number) * multiplier
    if size.denominator != 1:
        raise SizeError(f"{text!r} is not a whole number of bytes")
    return int(size)


def _size_option(text: str) -> int:
    """Typer parser for size options: a `parse_size` error becomes a usage error with its message."""
    try:
        return parse_size(text)
    except SizeError as exc:
        raise typer.BadParameter(str(exc)) from None


def input_file_argument(metavar: str, help: str) -> Any:
    """A required FILE argument that must name an existing file (not a directory), checked before the command runs."""
    return typer.Argument(metavar=metavar, help=help, exists=True, dir_okay=False, show_default=False)


# ------------------------------------------------------------------------- limits

_DEFAULTS: Final = Limits()

# CLI option name -> the Limits field it sets.
_LIMIT_FIELDS: Final[dict[str, str]] = {
    "timeout": "timeout_s",
    "fuel": "fuel",
    "memory": "memory_bytes",
    "max_output": "max_output_bytes",
}


def _limit_problem(option: str, value: Any) -> str | None:
    """Why `Limits` refuses `value` for `option` (a key of `_LIMIT_FIELDS`), or None when it is accepted."""
    try:
        Limits(**{_LIMIT_FIELDS[option]: value})
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _check_limit(param: typer.CallbackParam, value: Any) -> Any:
    """Option callback: refuse a value `Limits` would refuse, as a usage error naming the option."""
    if value is not None and param.name is not None:
        problem = _limit_problem(param.name, value)
        if problem is not None:
            raise typer.BadParameter(problem)
    return value


def build_limits(
    *, timeout: float | None = None, fuel: int | None = None, memory: int | None = None, max_output: int | None = None
) -> Limits:
    """`Limits` from the CLI options that were given (not None); the others keep their defaults.

    Raises ``typer.BadParameter`` naming the offending option when a value is refused.
    """
    given = {"timeout": timeout, "fuel": fuel, "memory": memory, "max_output": max_output}
    fields: dict[str, Any] = {}
    for option, value in given.items():
        if value is None:
            continue
        problem = _limit_problem(option, value)
        if problem is not None:
            raise typer.BadParameter(problem, param_hint=f"'--{option.replace('_', '-')}'")
        fields[_LIMIT_FIELDS[option]] = value
    return Limits(**fields)


def _limit_option(flag: str, metavar: str, *, show_default: str, help: str, **extra: Any) -> Any:
    """A limit's ``typer.Option``, checked by `_check_limit` as it is parsed (a bad value is a usage error)."""
    return typer.Option(flag, metavar=metavar, callback=_check_limit, show_default=show_default, help=help, **extra)


def timeout_option(*, default: float = _DEFAULTS.timeout_s, per: str = "") -> Any:
    """``--timeout SECONDS``: the wall-clock deadline (`Limits.timeout_s`); `per` says of what, e.g. " per sample"."""
    return _limit_option(
        "--timeout", "SECONDS", show_default=f"{default:g}", help=f"Wall-clock deadline{per} in seconds."
    )


def memory_option(*, per: str = "") -> Any:
    """``--memory SIZE``: the guest memory cap (`Limits.memory_bytes`), as bytes or 256M, 1G, 512MiB."""
    return _limit_option(
        "--memory",
        "SIZE",
        parser=_size_option,
        show_default=f"{_DEFAULTS.memory_bytes // 1024**2}M",
        help=f"Guest memory cap{per}: bytes or a size like 256M, 1G, 512MiB (units are powers of 1024).",
    )


def fuel_option(*, per: str = "") -> Any:
    """``--fuel N``: the CPU budget in wasm instructions (`Limits.fuel`)."""
    return _limit_option(
        "--fuel", "N", show_default=f"{_DEFAULTS.fuel:_}", help=f"CPU budget{per} in wasm instructions."
    )


def max_output_option(*, help: str = "Cap on each of stdout and stderr, in bytes.") -> Any:
    """``--max-output BYTES``: the cap on each of stdout and stderr (`Limits.max_output_bytes`)."""
    return _limit_option("--max-output", "BYTES", show_default=str(_DEFAULTS.max_output_bytes), help=help)


# The limit options as parameter types, for commands that take them with the standard help texts:
#     def cmd(timeout: TimeoutOption = None, memory: MemoryOption = None, ...): limits = build_limits(...)
TimeoutOption = Annotated[float | None, timeout_option()]
MemoryOption = Annotated[int | None, memory_option()]
FuelOption = Annotated[int | None, fuel_option()]
MaxOutputOption = Annotated[int | None, max_output_option()]
