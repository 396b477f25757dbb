"""Lean host-function callbacks: wasmrun's own two hot imports, and every other import with its types cached.

wasmtime-py's generic component host-function callback rebuilds the
function's type from C on every call (parameter list, result type, and for a
``result``/``option``/``list`` its cases or element, again on every
conversion) before it converts a single value: tens of microseconds per call,
more than everything else a tool round trip does. So:

* ``host.call`` and ``host.output`` (fixed, simple signatures) get callbacks
  that read their strings straight out of the C values and write the reply
  with two C calls (`install`);
* every other host function (the default image's WASI) gets a callback that
  uses the types computed once when it is registered (`add_func`, with the
  conversions of `_typecache`).

Both rely on wasmtime-py's ctypes bindings (``wasmtime._ffi``), which are not
public API; they do nothing and return False when those do not look as
expected, and the caller falls back to the generic (slower, equally correct)
path. Both paths are covered by the same tests (``WASMRUN_NO_FASTCALL=1``
forces the generic one).
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable
from typing import Any

from wasmtime import StoreContext, WasmtimeError
from wasmtime.component import FuncType

from ..._runstate import Trap, current_run
from . import _typecache

try:  # pragma: no cover - exercised implicitly on import
    from wasmtime import _ffi as ffi

    _VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
    _STRING = int(ffi.WASMTIME_COMPONENT_STRING.value)
    _RESULT = int(ffi.WASMTIME_COMPONENT_RESULT.value)

    def _raw(name: str, restype: Any, *argtypes: Any) -> Any:
        # `dll[name]` is a fresh function object: wasmtime-py's own (typed) one stays as it is.
        function = ffi.dll[name]
        function.restype = restype
        function.argtypes = argtypes
        return function

    _byte_vec_new = _raw("wasm_byte_vec_new", None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    _byte_vec_delete = _raw("wasm_byte_vec_delete", None, ctypes.c_void_p)
    _val_new = _raw("wasmtime_component_val_new", ctypes.c_void_p, ctypes.c_void_p)
    _add_func = ffi.wasmtime_component_linker_instance_add_func
    _CALLBACK_T = ffi.wasmtime_component_func_callback_t
    # The same C signature as `_CALLBACK_T`, with plain integers for the pointers that are
    # only read or written here: ctypes then builds no pointer objects per call.
    _INT_CALLBACK_T = ctypes.CFUNCTYPE(
        ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
    )  # fmt: skip
    _STORE_CALLBACK_T = ctypes.CFUNCTYPE(
        ctypes.c_size_t, ctypes.c_void_p, ctypes.POINTER(ffi.wasmtime_context_t), ctypes.c_void_p,
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
    )  # fmt: skip
    _FINALIZER_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    # The process's memory as one buffer, to read and write the C values of a call with plain
    # slicing and `struct` instead of a ctypes call each (`string_at`, `memmove`): the same
    # unchecked access to addresses wasmtime handed over, at a quarter of the cost.
    _MEMORY = memoryview((ctypes.c_char * ((1 << 47) - 1)).from_address(0)).cast("B")
    # The layout read and written below: a 32-byte value, its kind in byte 0 and its payload at
    # offset 8; a string's payload is (size, data); a result's is (is_ok, boxed value pointer).
    def _offset(struct_type: Any, field: str) -> int:
        return int(getattr(struct_type, field).offset)

    _AVAILABLE = (
        _VAL_SIZE == 32
        and _offset(ffi.wasmtime_component_val_t, "kind") == 0
        and _offset(ffi.wasmtime_component_val_t, "of") == 8
        and _offset(ffi.wasm_byte_vec_t, "size") == 0
        and _offset(ffi.wasm_byte_vec_t, "data") == 8
        and _offset(ffi.wasmtime_component_valresult_t, "is_ok") == 0
        and _offset(ffi.wasmtime_component_valresult_t, "val") == 8
        and _CALLBACK_T._restype_ is ctypes.c_size_t
        and len(_CALLBACK_T._argtypes_) == 7
        and _typecache.AVAILABLE
    )
except (ImportError, AttributeError, TypeError):  # pragma: no cover
    _AVAILABLE = False

_TWO_STRINGS = struct.Struct("<B7xQQ8xB7xQQ8x")  # two string values: (kind, size, data) each
_U32_STRING = struct.Struct("<8xI20xB7xQQ8x")  # a u32 value, then a string value
_RESULT_VAL = struct.Struct("<B7x?7xQ8x")  # a result value: kind, is_ok, boxed payload

# The C callbacks must outlive every linker that refers to them.
_KEEP_ALIVE: list[Any] = []


def enabled() -> bool:
    """Whether the lean callbacks can be (and may be) used in this process."""
    return _AVAILABLE and not os.environ.get("WASMRUN_NO_FASTCALL")


def defined() -> int:
    """How many host functions this process defined with the lean callbacks (tests check it is not 0)."""
    return len(_KEEP_ALIVE)


def _error_ptr(message: str) -> int:
    return ctypes.cast(WasmtimeError(message)._consume(), ctypes.c_void_p).value or 0


def _failed(name: str, exc: BaseException) -> int:
    """The trap for a host function that raised: noted on the run (never propagated through C)."""
    if isinstance(exc, Trap):
        return _error_ptr(f"wasmrun: {exc}")
    run = current_run(required=False)
    if run is not None:
        run.internal_error = run.internal_error or f"{name}: {type(exc).__name__}: {exc}"
    return _error_ptr(f"wasmrun: host function {name} failed")


def _take_string(address: int, size: int, data: int) -> str:
    """The text of a string value at `address` (its size and data already read), freeing what it owns."""
    text = str(_MEMORY[data : data + size], "utf-8")
    _byte_vec_delete(address + 8)
    return text


def _take_two_strings(args: int) -> tuple[str, str]:
    kind0, size0, data0, kind1, size1, data1 = _TWO_STRINGS.unpack_from(_MEMORY, args)
    if kind0 != _STRING or kind1 != _STRING:
        raise TypeError("host.call: unexpected argument kinds")
    return _take_string(args, size0, data0), _take_string(args + _VAL_SIZE, size1, data1)


def _take_u32_string(args: int) -> tuple[int, str]:
    fd, kind, size, data = _U32_STRING.unpack_from(_MEMORY, args)
    if kind != _STRING:
        raise TypeError("host.output: unexpected argument kinds")
    return fd, _take_string(args + _VAL_SIZE, size, data)


def _put_result(results: int, ok: bool, text: str) -> None:
    """Write ``ok(text)`` / ``err(text)`` into the result slot (a boxed string, as the C API wants)."""
    data = text.encode("utf-8", "replace")  # messages may quote the guest's own (possibly invalid) text
    # Build the string value in the slot itself, move it into a box, then make the slot the result.
    _MEMORY[results] = _STRING
    _byte_vec_new(results + 8, len(data), data)
    _RESULT_VAL.pack_into(_MEMORY, results, _RESULT, ok, _val_new(results))


def _make_call(impl: Callable[[Any, str, str], tuple[bool, str]]) -> Any:
    def callback(data: int, context: int, ty: int, args: int, nargs: int, results: int, nresults: int) -> int:
        try:
            if nargs != 2 or nresults != 1:
                return _error_ptr("wasmrun: host.call has an unexpected signature")
            name, payload = _take_two_strings(args)
            ok, text = impl(current_run(), name, payload)
            _put_result(results, ok, text)
            return 0
        except BaseException as exc:  # noqa: BLE001 - nothing may cross the ctypes boundary
            return _failed("host.call", exc)

    return _INT_CALLBACK_T(callback)


def _make_output(impl: Callable[[Any, int, str], None]) -> Any:
    def callback(data: int, context: int, ty: int, args: int, nargs: int, results: int, nresults: int) -> int:
        try:
            if nargs != 2 or nresults != 0:
                return _error_ptr("wasmrun: host.output has an unexpected signature")
            fd, text = _take_u32_string(args)
            impl(current_run(), fd, text)
            return 0
        except BaseException as exc:  # noqa: BLE001
            return _failed("host.output", exc)

    return _INT_CALLBACK_T(callback)


def _define(instance: Any, name: str, callback: Any) -> None:
    encoded = name.encode()
    # No finalizer: the linker may be deleted during interpreter teardown, after a
    # Python-level finalizer thunk was freed; calling it then crashes the process.
    err = _add_func(
        instance.ptr(),
        ctypes.create_string_buffer(encoded),
        len(encoded),
        ctypes.cast(callback, _CALLBACK_T),
        None,
        _FINALIZER_T(),
    )
    if err:
        raise WasmtimeError._from_ptr(err)
    _KEEP_ALIVE.append(callback)


def install(
    instance: Any,
    call: Callable[[Any, str, str], tuple[bool, str]],
    output: Callable[[Any, int, str], None],
) -> bool:
    """Define ``call`` and ``output`` on a `LinkerInstance` with the lean callbacks; False if unavailable.

    `call(run, name, arguments) -> (ok, text)`; `output(run, fd, text)`.
    """
    if not enabled():
        return False
    _define(instance, "call", _make_call(call))
    _define(instance, "output", _make_output(output))
    return True


def add_func(instance: Any, name: str, fty: FuncType, func: Callable[..., Any], label: str) -> bool:
    """Define `func` (called as wasmtime-py would: ``func(store, *args)``) with its types converted once.

    `fty` must be the type the component imports `name` with. False when the lean
    path is unavailable or the type has a part it does not handle: then use
    ``instance.add_func``. `label` names the function in errors.
    """
    if not enabled():
        return False
    converters = _typecache.function(fty)
    if converters is None:
        return False
    lift_args, lower_result = converters
    nparams = len(lift_args)
    nresults_expected = 0 if lower_result is None else 1

    def callback(data: int, context: Any, ty: int, args: int, nargs: int, results: int, nresults: int) -> int:
        store = StoreContext(context)
        try:
            if nargs != nparams or nresults != nresults_expected:
                return _error_ptr(f"wasmrun: {label} has an unexpected signature")
            values = [lift(args + i * _VAL_SIZE) for i, lift in enumerate(lift_args)]
            result = func(store, *values)
            if lower_result is not None:
                lower_result(store, result, results)
            elif result is not None:
                raise TypeError(f"{label} returned a value for a function without results")
            return 0
        except WasmtimeError as exc:
            return ctypes.cast(exc._consume(), ctypes.c_void_p).value or 0
        except BaseException as exc:  # noqa: BLE001 - nothing may cross the ctypes boundary
            return _failed(label, exc)
        finally:
            store._invalidate()

    _define(instance, name, _STORE_CALLBACK_T(callback))
    return True
