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
import os
import posixpath
import shutil
from collections.abc import Callable
from pathlib import Path

import msgspec
import wasmtime

from ._instance import FD_WORK, ScientificInstance
from ._template import Template
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


def copy_into(source: ScientificInstance, target: ScientificInstance) -> None:
    """Make the fresh `target` a copy of `source` (at rest): memory, files, inputs."""
    base, size = _memory(source)
    _grow(target, size)
    target_base, _ = _memory(target)
    ctypes.memmove(target_base, base, size)
    for top in ("work", "tmp"):
        shutil.copytree(source.root / top, target.root / top, dirs_exist_ok=True, symlinks=False)
    _copy_bookkeeping(source, target)


def _copy_bookkeeping(source: ScientificInstance, target: ScientificInstance) -> None:
    target.inputs = dict(source.inputs)
    target.input_dirs = source.input_dirs
    target.scratch = source.scratch


def dump(instance: ScientificInstance, pristine: Callable[[int], ScientificInstance]) -> bytes:
    """`instance`'s state as bytes; `pristine(memory_bytes)` makes a fresh instance to diff the memory against."""
    base, size = _memory(instance)
    current = ctypes.string_at(base, size)
    fresh_instance = pristine(size)
    try:
        fresh_base, fresh_size = _memory(fresh_instance)
        fresh = ctypes.string_at(fresh_base, fresh_size)
    finally:
        fresh_instance.store.close()
        shutil.rmtree(fresh_instance.root, ignore_errors=True)
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
    state = InstanceState(size=template.size, runs=template.runs, dirs=dirs, files=files, inputs=instance.inputs)
    return msgspec.msgpack.encode(state)


def _safe(rel: str) -> str:
    """`rel` if it names something under work/ or tmp/, else ValueError (the data may be hostile)."""
    norm = posixpath.normpath(rel)
    if rel.startswith("/") or norm != rel or norm.split("/")[0] not in ("work", "tmp") or ".." in norm.split("/"):
        raise ValueError(f"invalid path in instance state: {rel!r}")
    return norm


def load(data: bytes, fresh: ScientificInstance) -> None:
    """Make the fresh instance `fresh` hold the dumped state; ValueError for data that does not fit."""
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
