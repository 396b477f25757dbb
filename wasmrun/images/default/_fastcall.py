"""A lean host-function path for wasmrun's own two hot imports, ``host.call`` and ``host.output``.

wasmtime-py's generic component host-function callback rebuilds the function's
type from C on every call (parameter list, result variant, tagging) before it
converts a single value: ~50 us per call, more than everything else a tool
round trip does. wasmrun's own imports have fixed, simple signatures, so they
get a callback that reads their strings straight from the C values.

This relies on wasmtime-py's ctypes bindings (``wasmtime._ffi``), which are
not public API; `install` returns False when they do not look as expected, and
the caller falls back to the generic (slower, equally correct) path. Both
paths are covered by the same tests (``WASMRUN_NO_FASTCALL=1`` forces the
generic one).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

from wasmtime import WasmtimeError

from ..._runstate import Trap, current_run

try:  # pragma: no cover - exercised implicitly on import
    from wasmtime import _ffi as ffi

    _CALLBACK_T = ffi.wasmtime_component_func_callback_t
    _FINALIZER_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    _AVAILABLE = all(
        hasattr(ffi, name)
        for name in (
            "wasmtime_component_linker_instance_add_func",
            "wasmtime_component_val_new",
            "WASMTIME_COMPONENT_STRING",
            "WASMTIME_COMPONENT_RESULT",
            "wasm_byte_vec_delete",
            "to_str",
            "str_to_capi",
        )
    )
except (ImportError, AttributeError):  # pragma: no cover
    _AVAILABLE = False

# The C callbacks must outlive every linker that refers to them.
_KEEP_ALIVE: list[Any] = []


def _take_str(val: Any) -> str:
    text: str = ffi.to_str(val.of.string)
    ffi.wasm_byte_vec_delete(ctypes.byref(val.of.string))
    return text


def _error_ptr(message: str) -> int:
    return ctypes.cast(WasmtimeError(message)._consume(), ctypes.c_void_p).value or 0


def _make_call(impl: Callable[[Any, str, str], tuple[bool, str]]) -> Any:
    def callback(data: Any, context: Any, ty: Any, args: Any, nargs: int, results: Any, nresults: int) -> int:
        try:
            if nargs != 2 or nresults != 1:
                return _error_ptr("wasmrun: host.call has an unexpected signature")
            name = _take_str(args[0])
            payload = _take_str(args[1])
            ok, text = impl(current_run(), name, payload)
            inner = ffi.wasmtime_component_val_t()
            inner.kind = ffi.WASMTIME_COMPONENT_STRING
            inner.of.string = ffi.str_to_capi(text.encode("utf-8", "replace").decode("utf-8"))
            out = results[0]
            out.kind = ffi.WASMTIME_COMPONENT_RESULT
            out.of.result.is_ok = ok
            out.of.result.val = ffi.wasmtime_component_val_new(ctypes.byref(inner))
            return 0
        except Trap as trap:
            return _error_ptr(f"wasmrun: {trap}")
        except BaseException as exc:  # noqa: BLE001 - nothing may cross the ctypes boundary
            run = current_run(required=False)
            if run is not None:
                run.internal_error = run.internal_error or f"host.call: {type(exc).__name__}: {exc}"
            return _error_ptr("wasmrun: host function host.call failed")

    return _CALLBACK_T(callback)


def _make_output(impl: Callable[[Any, int, str], None]) -> Any:
    def callback(data: Any, context: Any, ty: Any, args: Any, nargs: int, results: Any, nresults: int) -> int:
        try:
            if nargs != 2 or nresults != 0:
                return _error_ptr("wasmrun: host.output has an unexpected signature")
            fd = int(args[0].of.u32)
            impl(current_run(), fd, _take_str(args[1]))
            return 0
        except Trap as trap:
            return _error_ptr(f"wasmrun: {trap}")
        except BaseException as exc:  # noqa: BLE001
            run = current_run(required=False)
            if run is not None:
                run.internal_error = run.internal_error or f"host.output: {type(exc).__name__}: {exc}"
            return _error_ptr("wasmrun: host function host.output failed")

    return _CALLBACK_T(callback)


def install(
    instance: Any,
    call: Callable[[Any, str, str], tuple[bool, str]],
    output: Callable[[Any, int, str], None],
) -> bool:
    """Define ``call`` and ``output`` on a `LinkerInstance` with the lean callbacks; False if unavailable."""
    if not _AVAILABLE or os.environ.get("WASMRUN_NO_FASTCALL"):
        return False
    # No finalizer: the linker may be deleted during interpreter teardown, after a
    # Python-level finalizer thunk was freed; calling it then crashes the process.
    finalizer = _FINALIZER_T()
    for name, callback in (("call", _make_call(call)), ("output", _make_output(output))):
        encoded = name.encode()
        err = ffi.wasmtime_component_linker_instance_add_func(
            instance.ptr(), ctypes.create_string_buffer(encoded), len(encoded), callback, None, finalizer
        )
        if err:
            raise WasmtimeError._from_ptr(err)
        _KEEP_ALIVE.append(callback)
    return True
