"""The memory template: a warm instance's changed pages, copied into fresh instances (see `_backend`)."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import wasmtime

from ._instance import ScientificInstance


def _libc_memcmp() -> Any:
    try:
        memcmp = ctypes.CDLL(None).memcmp
    except (OSError, AttributeError):
        return None
    memcmp.restype = ctypes.c_int
    memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return memcmp


#: libc's memcmp through ctypes (which releases the GIL during the call), or None where it cannot be found.
MEMCMP = _libc_memcmp()


class Template:
    """The pages of a warm instance's memory that differ from a pristine instance's, ready to copy."""

    PAGE = 65536

    def __init__(self, size: int, runs: Sequence[tuple[int, bytes | bytearray]]) -> None:
        self.size = size
        self.runs = runs

    @classmethod
    def between(cls, fresh: int, fresh_size: int, warm: int, warm_size: int) -> Template | None:
        """`diff` of two memories given by address and size, never holding the GIL for long; None without memcmp.

        The warm template is captured on the pool thread while runs may be going
        on: copying its ~100 MiB into `bytes` first (`ctypes.string_at`) held the
        GIL for hundreds of milliseconds, and a running guest's deadline check,
        which needs the GIL, waited that long. Here every long call (memcmp,
        memmove into a new bytearray) releases the GIL.
        """
        if MEMCMP is None:
            return None
        page = cls.PAGE
        zero = ctypes.create_string_buffer(page)
        runs: list[tuple[int, bytes | bytearray]] = []
        start = None

        def take(begin: int, end: int) -> None:
            data = bytearray(end - begin)
            ctypes.memmove((ctypes.c_char * len(data)).from_buffer(data), warm + begin, len(data))
            runs.append((begin, data))

        for offset in range(0, warm_size, page):
            n = min(page, warm_size - offset)
            other = fresh + offset if offset + n <= fresh_size else ctypes.addressof(zero)
            same = MEMCMP(warm + offset, other, n) == 0
            if not same and start is None:
                start = offset
            elif same and start is not None:
                take(start, offset)
                start = None
        if start is not None:
            take(start, warm_size)
        return cls(warm_size, runs)

    @classmethod
    def diff(cls, fresh: bytes, warm: bytes) -> Template:
        page = cls.PAGE
        zero = bytes(page)
        runs: list[tuple[int, bytes]] = []
        start = None
        for offset in range(0, len(warm), page):
            chunk = warm[offset : offset + page]
            same = chunk == fresh[offset : offset + page] if offset < len(fresh) else chunk == zero[: len(chunk)]
            if not same and start is None:
                start = offset
            elif same and start is not None:
                runs.append((start, warm[start:offset]))
                start = None
        if start is not None:
            runs.append((start, warm[start:]))
        return cls(len(warm), runs)

    def fits(self, instance: ScientificInstance) -> bool:
        assert instance.memory is not None
        return instance.memory.data_len(instance.store) <= self.size

    def apply(self, instance: ScientificInstance) -> None:
        """Make a pristine (or shim-only) instance's memory the template's. Raises WasmtimeError past the cap."""
        store, memory = instance.store, instance.memory
        assert memory is not None
        have = memory.data_len(store)
        if have > self.size:
            raise wasmtime.WasmtimeError("the instance's memory is larger than the warm template")
        if have < self.size:
            memory.grow(store, (self.size - have) // self.PAGE)
        base = ctypes.cast(memory.data_ptr(store), ctypes.c_void_p).value or 0
        for offset, data in self.runs:
            source = data if isinstance(data, bytes) else (ctypes.c_char * len(data)).from_buffer(data)
            ctypes.memmove(base + offset, source, len(data))


def mutable_globals(wasm: Path) -> list[int]:
    """Indices of the module's mutable globals (the template copy is faithful only if the one is the stack pointer)."""
    data = wasm.read_bytes()

    def leb(i: int) -> tuple[int, int]:
        result = shift = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return result, i

    found: list[int] = []
    i = 8
    while i < len(data):
        section = data[i]
        size, i = leb(i + 1)
        if section == 6:  # globals
            count, j = leb(i)
            for index in range(count):
                mutable = data[j + 1]
                j += 2
                opcode = data[j]
                j += 1
                if opcode in (0x41, 0x42, 0x23):  # i32.const, i64.const, global.get
                    _, j = leb(j)
                elif opcode == 0x44:  # f64.const
                    j += 8
                elif opcode == 0x43:  # f32.const
                    j += 4
                else:
                    return [-1, -2]  # an initialiser we do not read: treat as unknown
                if data[j] != 0x0B:
                    return [-1, -2]
                j += 1
                if mutable:
                    found.append(index)
            return found
        i += size
    return found


def is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)
