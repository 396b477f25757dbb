"""A scientific-image instance's state, copied (a session's fork) or turned into bytes and back (snapshots).

Between turns, an instance's whole guest state is its linear memory (the module
has one mutable global, the stack pointer, back at its initial value when a turn
ends, and a function table that never changes) plus host-side state: its files
in ``/work`` and ``/tmp`` and wasmtime's table of open files. Every instance has
the same four preopens under the same numbers, so a copy is faithful exactly
when no other file is open; otherwise these functions decline (None) and the
session re-executes its calls instead. matplotlib keeps font files open: the
guest shim closes them at the end of each session call (see wasmrun_scientific.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import posixpath
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import wasmtime

from ._instance import FD_WORK, ScientificInstance
from ._template import MEMCMP, Template
from ._wasi import ERRNO_SUCCESS, MASK32

_CHECK_FUEL = 10**9
_CHECK_TICKS = 10**9


class InstanceState(msgspec.Struct, frozen=True):
    """What `dump` writes: memory pages that differ from a pristine instance's, files, and input bookkeeping."""

    size: int
    runs: list[tuple[int, bytes]]
    dirs: list[str]  # "work/..." and "tmp/..." directories, parents first
    files: dict[str, bytes]  # "work/..." and "tmp/..." files
    inputs: dict[str, bytes]


_DECODER = msgspec.msgpack.Decoder(InstanceState)


def digest(shim_sources: dict[str, str]) -> str:
    """Part of the image id: a dumped memory holds the guest shim's code, so its sources must match too."""
    return hashlib.sha256(json.dumps(shim_sources, sort_keys=True).encode()).hexdigest()[:16]


def at_rest(instance: ScientificInstance) -> bool:
    """Whether `instance` holds no open file besides the preopens (so that its memory alone is its state)."""
    store = instance.store
    fdstat = instance.forward.get("fd_fdstat_get")
    if fdstat is None or instance.alloc is None:
        return False
    store.set_fuel(_CHECK_FUEL)
    store.set_epoch_deadline(_CHECK_TICKS)
    if not instance.scratch:
        instance.scratch = instance.alloc(store, 64) & MASK32
        if not instance.scratch:
            return False
    return not any(fdstat(store, fd, instance.scratch) == ERRNO_SUCCESS for fd in range(FD_WORK + 1, FD_WORK + 256))


def _memory(instance: ScientificInstance) -> tuple[int, int]:
    memory = instance.memory
    assert memory is not None
    base = ctypes.cast(memory.data_ptr(instance.store), ctypes.c_void_p).value or 0
    return base, memory.data_len(instance.store)


def _grow(instance: ScientificInstance, size: int) -> None:
    memory = instance.memory
    assert memory is not None
    have = memory.data_len(instance.store)
    if have > size:
        raise ValueError("the saved memory is smaller than a fresh instance's")
    if have < size:
        memory.grow(instance.store, (size - have) // Template.PAGE)


def copy(
    source: ScientificInstance, fresh: Callable[[], ScientificInstance], close: Callable[[ScientificInstance], None]
) -> ScientificInstance | None:
    """A new instance (made by `fresh`) that is a copy of `source`, or None when `source` is not at rest."""
    if not at_rest(source):
        return None
    target = fresh()
    try:
        base, size = _memory(source)
        _grow(target, size)
        target_base, _ = _memory(target)
        _copy_changed(base, target_base, size)
        for top in ("work", "tmp"):
            shutil.copytree(source.root / top, target.root / top, dirs_exist_ok=True, symlinks=False)
        _copy_bookkeeping(source, target)
    except (wasmtime.WasmtimeError, ValueError):
        close(target)
        return None  # e.g. the copy does not fit the cap: the session re-executes instead
    except BaseException:
        close(target)
        raise
    return target


_MEMCMP = MEMCMP


def _copy_changed(source: int, target: int, size: int) -> None:
    """Copy `size` bytes, skipping 64 KiB pages the target already holds (from the pristine image).

    Writing a page of the fresh instance costs a copy-on-write fault; comparing
    first is cheaper for the ~40% of a warm session's pages that never changed.
    """
    if _MEMCMP is None:
        ctypes.memmove(target, source, size)
        return
    page = Template.PAGE
    start = None
    for offset in range(0, size, page):
        same = _MEMCMP(source + offset, target + offset, min(page, size - offset)) == 0
        if not same and start is None:
            start = offset
        elif same and start is not None:
            ctypes.memmove(target + start, source + start, offset - start)
            start = None
    if start is not None:
        ctypes.memmove(target + start, source + start, size - start)


def _copy_bookkeeping(source: ScientificInstance, target: ScientificInstance) -> None:
    target.inputs = dict(source.inputs)
    target.input_dirs = source.input_dirs
    target.scratch = source.scratch


def dump(
    instance: ScientificInstance,
    pristine: Callable[[int], ScientificInstance],
    close: Callable[[ScientificInstance], None],
) -> bytes | None:
    """`instance`'s state as bytes, or None when not at rest; `pristine(size)` gives memory to diff against."""
    if not at_rest(instance):
        return None
    base, size = _memory(instance)
    current = ctypes.string_at(base, size)
    fresh_instance = pristine(size)
    try:
        fresh_base, fresh_size = _memory(fresh_instance)
        fresh = ctypes.string_at(fresh_base, fresh_size)
    finally:
        close(fresh_instance)
    template = Template.diff(fresh, current)
    dirs: list[str] = []
    files: dict[str, bytes] = {}
    for top in ("work", "tmp"):
        for dirpath, dirnames, filenames in os.walk(instance.root / top):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(instance.root).as_posix()
            dirs.append(rel_dir)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file():
                    continue
                files[f"{rel_dir}/{name}"] = path.read_bytes()
    runs = [(offset, bytes(data)) for offset, data in template.runs]  # bytes already: no copy
    state = InstanceState(size=template.size, runs=runs, dirs=dirs, files=files, inputs=instance.inputs)
    return msgspec.msgpack.encode(state)


def _safe(rel: str) -> str:
    """`rel` if it names something under work/ or tmp/, else ValueError (the data may be hostile)."""
    norm = posixpath.normpath(rel)
    if rel.startswith("/") or norm != rel or norm.split("/")[0] not in ("work", "tmp") or ".." in norm.split("/"):
        raise ValueError(f"invalid path in instance state: {rel!r}")
    return norm


def load(data: bytes, fresh: ScientificInstance, close: Callable[[ScientificInstance], None]) -> ScientificInstance:
    """The fresh instance `fresh`, made to hold the dumped state; ValueError (and `fresh` closed) when it cannot."""
    try:
        _load(data, fresh)
    except BaseException:
        close(fresh)
        raise
    return fresh


def _load(data: bytes, fresh: ScientificInstance) -> None:
    try:
        state = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"instance state is damaged: {exc}") from None
    page = Template.PAGE
    if state.size % page or state.size <= 0:
        raise ValueError("instance state has a memory size that is not a whole number of pages")
    for offset, chunk in state.runs:
        # The copy writes straight into the host's mapping of guest memory: bounds are not optional.
        if offset < 0 or offset % page or offset + len(chunk) > state.size:
            raise ValueError("instance state writes outside its memory")
    try:
        _grow(fresh, state.size)
    except wasmtime.WasmtimeError as exc:
        raise ValueError(f"the saved memory ({state.size:,} bytes) does not fit the memory cap: {exc}") from None
    Template(state.size, state.runs).apply(fresh)
    for rel in state.dirs:
        (fresh.root / _safe(rel)).mkdir(parents=True, exist_ok=True)
    for rel, content in state.files.items():
        target = fresh.root / _safe(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    inputs = {}
    for name, content in state.inputs.items():
        _safe(f"work/{name}")
        inputs[name] = content
    fresh.inputs = inputs
    dirs = set()
    for name in inputs:
        parent = posixpath.dirname(name)
        while parent:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    fresh.input_dirs = frozenset(dirs)


class Sessions:
    """`ScientificBackend`'s session methods (`Backend.copy`, `dump`, `load`), mixed into it."""

    _mutable_globals: list[int]

    if TYPE_CHECKING:

        def _raw(self, memory_bytes: int) -> ScientificInstance: ...

        def close(self, instance: ScientificInstance) -> None: ...

    def _faithful(self) -> bool:
        # The copy is the whole state only if the module's one mutable global is the stack pointer.
        return len(self._mutable_globals) == 1

    def copy(self, instance: ScientificInstance, memory_bytes: int) -> ScientificInstance | None:
        """A copy of the memory and files of `instance` in a fresh instance (~memcpy of the heap + the files)."""
        return copy(instance, lambda: self._raw(memory_bytes), self.close) if self._faithful() else None

    def dump(self, instance: ScientificInstance) -> bytes | None:
        """The memory pages that differ from a pristine instance's, the files and the inputs, as bytes."""
        return dump(instance, self._raw, self.close) if self._faithful() else None

    def load(self, data: bytes, memory_bytes: int) -> ScientificInstance:
        """A fresh instance holding the dumped state; ValueError for data that does not fit."""
        if not self._faithful():
            raise ValueError("this build of the scientific image cannot load memory state")
        return load(data, self._raw(memory_bytes), self.close)
