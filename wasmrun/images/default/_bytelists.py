"""Byte lists (WIT ``list<u8>``) across the component boundary in one copy instead of one Python call per byte.

Every file read and write and every raw ``os.write(1, ...)`` of the default
image crosses as a ``list<u8>`` (WASI preview 2 streams). wasmtime-py converts
such a list element by element in Python, ~12 us per byte: reading a 1 MB
input file took ~10 s, and a guest could stall its host thread inside one
conversion for as long as it liked, out of reach of the run's deadline.

The C representation is an array of 32-byte ``wasmtime_component_val_t``
values (a kind byte, then the payload; a ``u8`` owns nothing), so a byte list
can be read with one ``string_at`` and a strided slice, and written by
tiling one element's bytes and assigning the payload bytes in one slice.
`install` replaces the two conversions of ``ListType`` for byte lists only;
every other list takes wasmtime-py's own path. Like `_fastcall`, this relies
on wasmtime-py's ctypes bindings, checks their layout first, and does nothing
when they differ or when ``WASMRUN_NO_FASTCALL=1`` asks for the generic path.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

try:  # pragma: no cover - exercised implicitly on import
    from wasmtime import _ffi as ffi
    from wasmtime.component import _types

    _VAL = ffi.wasmtime_component_val_t
    _SIZE = ctypes.sizeof(_VAL)
    _PAYLOAD = _VAL.of.offset  # a union: its u8 member starts where it starts
    _U8 = int(ffi.WASMTIME_COMPONENT_U8.value)
    _LIST = int(ffi.WASMTIME_COMPONENT_LIST.value)
    _AVAILABLE = _VAL.kind.offset == 0 and _VAL.kind.size == 1 and _PAYLOAD < _SIZE
except (ImportError, AttributeError):  # pragma: no cover
    _AVAILABLE = False

_generic: tuple[Any, Any] | None = None  # wasmtime-py's own conversions, while ours are installed


def install() -> bool:
    """Use the one-copy conversions for byte lists from now on; False when the bindings do not allow it."""
    global _generic
    if _generic is not None:
        return True
    if not _AVAILABLE or os.environ.get("WASMRUN_NO_FASTCALL") == "1":
        return False
    list_type = _types.ListType
    generic_from_c = list_type.convert_from_c
    generic_to_c = list_type.convert_to_c
    kinds = bytes((_U8,)) * 65536  # the kind byte of every element, for the usual chunk sizes

    def convert_from_c(self: Any, c: Any) -> Any:
        if not self._is_bytes():
            return generic_from_c(self, c)
        try:
            size = int(c.of.tuple.size)
            if size == 0:
                return b""
            address = ctypes.cast(c.of.tuple.data, ctypes.c_void_p).value or 0
            return ctypes.string_at(address, size * _SIZE)[_PAYLOAD::_SIZE]
        finally:
            ffi.wasmtime_component_valtuple_delete(ctypes.byref(c.of.tuple))

    def convert_to_c(self: Any, store: Any, val: Any, ptr: Any) -> None:
        if not self._is_bytes() or not isinstance(val, (bytes, bytearray)):
            generic_to_c(self, store, val, ptr)
            return
        raw = ffi.wasmtime_component_vallist_t()
        ffi.wasmtime_component_vallist_new_uninit(raw, len(val))
        if val:
            total = len(val) * _SIZE
            address = ctypes.cast(raw.data, ctypes.c_void_p).value or 0
            ctypes.memset(address, 0, total)
            view = memoryview((ctypes.c_ubyte * total).from_address(address)).cast("B")
            view[0::_SIZE] = kinds[: len(val)] if len(val) <= len(kinds) else bytes((_U8,)) * len(val)
            view[_PAYLOAD::_SIZE] = val
        ptr.contents.kind = _LIST
        ptr.contents.of.list = raw

    _generic = (generic_from_c, generic_to_c)
    list_type.convert_from_c = convert_from_c  # type: ignore[method-assign]
    list_type.convert_to_c = convert_to_c  # type: ignore[method-assign]
    return True


def installed() -> bool:
    """Whether byte lists currently take the one-copy path."""
    return _generic is not None


def uninstall() -> None:
    """Give byte lists back to wasmtime-py's own conversions (for comparisons in tests and benchmarks)."""
    global _generic
    if _generic is not None:
        _types.ListType.convert_from_c, _types.ListType.convert_to_c = _generic  # type: ignore[method-assign]
        _generic = None
