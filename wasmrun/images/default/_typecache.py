"""Component value types asked of C once, then converted with wasmtime-py's own code.

wasmtime-py's type objects (`ListType`, `ResultType`, ...) answer every
question about themselves from C, each time: a ``result<u64, stream-error>``
looks up its ``ok`` and ``err`` types, and those their cases, on every value it
converts. Here a type tree is *frozen* once, when a host function is
registered: every node keeps what it answered (its element, fields, cases,
whether it is tagged) and becomes an instance of a subclass of its own class
that returns the kept answers. The conversions themselves stay wasmtime-py's
(so they behave exactly as on the generic path), and `isinstance` still holds.

`function` gives, for a function type, one converter per parameter (from the
address of a C value to a Python value) and one for the result (a Python value
into the address of the C result slot). Private wasmtime-py API: `AVAILABLE` is
False when it does not look as expected, and `_fastcall` then leaves every
function on the generic path.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

try:  # pragma: no cover - exercised implicitly on import
    from wasmtime import _ffi as ffi
    from wasmtime.component import (
        EnumType,
        FlagsType,
        FuncType,
        ListType,
        OptionType,
        RecordType,
        ResultType,
        TupleType,
        ValType,
        VariantType,
    )
    from wasmtime.component._types import U8, VariantLikeType

    _VAL = ffi.wasmtime_component_val_t
    # What each class asks of C (properties), and whether it has the helpers cached below.
    _ASKED: dict[type, tuple[str, ...]] = {
        ListType: ("element",),
        RecordType: ("fields",),
        TupleType: ("elements",),
        VariantType: ("cases",),
        EnumType: ("names",),
        OptionType: ("payload",),
        ResultType: ("ok", "err"),
        FlagsType: ("names",),
    }
    AVAILABLE = all(isinstance(getattr(cls, name, None), property) for cls, names in _ASKED.items() for name in names)
    AVAILABLE = AVAILABLE and all(hasattr(VariantLikeType, n) for n in ("_cases", "_tagged", "_lower", "_lift"))
    AVAILABLE = AVAILABLE and hasattr(ListType, "_is_bytes")
except (ImportError, AttributeError):  # pragma: no cover
    AVAILABLE = False

Lift = Callable[[int], Any]
Lower = Callable[[Any, Any, int], None]

_frozen_classes: dict[type, type] = {}


def _kept(name: str) -> property:
    key = f"_kept_{name}"
    return property(lambda self: self.__dict__[key])


def _frozen_class(base: type) -> type:
    cls = _frozen_classes.get(base)
    if cls is None:
        namespace: dict[str, Any] = {name: _kept(name) for name in _ASKED[base]}
        if issubclass(base, VariantLikeType):
            namespace["_cases"] = lambda self: self.__dict__["_kept_cases_list"]
            namespace["_tagged"] = lambda self: self.__dict__["_kept_tagged"]
        if base is ListType:
            namespace["_is_bytes"] = lambda self: self.__dict__["_kept_is_bytes"]
        cls = type(f"Frozen{base.__name__}", (base,), namespace)
        _frozen_classes[base] = cls
    return cls


def _freeze_answer(value: Any) -> Any:
    if isinstance(value, ValType):
        return freeze(value)
    if isinstance(value, list):
        return [_freeze_answer(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_freeze_answer(item) for item in value)
    return value  # None, a name


def freeze(ty: ValType) -> ValType:
    """Make `ty` (and every type inside it) answer from what it answered once; returns `ty`."""
    base = type(ty)
    if base in _frozen_classes.values() or base not in _ASKED:
        return ty  # already frozen, or a type that asks nothing of C (numbers, strings, resources)
    answers = {f"_kept_{name}": _freeze_answer(getattr(ty, name)) for name in _ASKED[base]}
    vars(ty).update(answers)
    ty.__class__ = _frozen_class(base)
    if isinstance(ty, VariantLikeType):
        vars(ty)["_kept_cases_list"] = base._cases(ty)  # type: ignore[attr-defined]
        vars(ty)["_kept_tagged"] = base._tagged(ty)  # type: ignore[attr-defined]
    if isinstance(ty, ListType):
        vars(ty)["_kept_is_bytes"] = isinstance(vars(ty)["_kept_element"], U8)
    return ty


# The conversion methods are looked up on every call, not bound once: `_bytelists` may swap
# `ListType`'s conversions in and out (tests compare both).
def _lift(ty: ValType) -> Lift:
    return lambda address: ty.convert_from_c(_VAL.from_address(address))


def _lower(ty: ValType) -> Lower:
    return lambda store, value, address: ty.convert_to_c(store, value, ctypes.pointer(_VAL.from_address(address)))


def function(fty: FuncType) -> tuple[list[Lift], Lower | None] | None:
    """Converters for the parameters and the result of `fty`, its types asked of C once; None: unavailable."""
    if not AVAILABLE:
        return None
    params = [freeze(ty) for _, ty in fty.params]
    result = fty.result
    return [_lift(ty) for ty in params], (None if result is None else _lower(freeze(result)))
