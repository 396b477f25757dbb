"""The WASI preview-1 calls wasmrun shadows for the scientific image, and the guest's door to the host.

wasmtime's own WASI preview 1 is kept for everything that cannot block or leak;
these replace it where it must not be trusted (see the package's `_backend`
docstring for the list and the reasons). Each host function finds its run
through the thread's `RunState` (``state.guest`` is the `ScientificInstance`)
and never classifies anything itself: it stops the guest with `Trap` and the
run's bookkeeping says why.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
from collections.abc import Callable
from typing import Any

import wasmtime

from ..._runstate import RunState, Trap, current_run
from ._instance import MAX_ENTRIES, ScientificInstance

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
MASK32 = 0xFFFFFFFF
_IOVEC = struct.Struct("<II")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


# ----------------------------------------------------------------------------- guest memory


def _memory(caller: Any, memory: wasmtime.Memory | None = None) -> tuple[int, int]:
    """(address, size) of the calling instance's linear memory (`memory`: its export, when already known)."""
    if memory is None:
        found = caller.get("memory")
        if not isinstance(found, wasmtime.Memory):
            raise Trap("the guest has no memory export")
        memory = found
    base = ctypes.cast(memory.data_ptr(caller), ctypes.c_void_p).value or 0
    return base, memory.data_len(caller)


def _read(base: int, size: int, pointer: int, length: int) -> bytes:
    pointer, length = pointer & MASK32, length & MASK32
    if pointer + length > size:
        raise IndexError("out of bounds")
    return ctypes.string_at(base + pointer, length)


def _write(base: int, size: int, pointer: int, data: bytes) -> None:
    pointer &= MASK32
    if pointer + len(data) > size:
        raise IndexError("out of bounds")
    ctypes.memmove(base + pointer, data, len(data))


def _gather(base: int, size: int, iovs: int, count: int) -> list[tuple[int, int]]:
    count &= MASK32
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


def host_function(name: str, impl: Callable[..., int]) -> Callable[..., int]:
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
    count &= MASK32
    if count == 0:
        return ERRNO_INVAL
    if count > _MAX_SUBSCRIPTIONS:
        return ERRNO_NOMEM
    base, size = _memory(caller)
    raw = _read(base, size, in_ptr, _SUBSCRIPTION.size * count)
    _read(base, size, out_ptr, _EVENT.size * count)  # bounds check before waiting
    _read(base, size, nevents_ptr, 4)
    now = run.timer_base_ns()
    ready: list[tuple[int, int, int]] = []  # userdata, type, nbytes
    clocks: list[tuple[int, int]] = []  # wake (host monotonic ns), userdata
    for userdata, tag, which, timeout, _precision, flags in _SUBSCRIPTION.iter_unpack(raw):
        if tag == EVENTTYPE_CLOCK:
            if flags & SUBCLOCK_ABSTIME:
                if which == CLOCK_REALTIME:
                    wake = run.wall_to_monotonic_ns(timeout)
                elif which == CLOCK_MONOTONIC:
                    wake = timeout  # the guest's monotonic clock is the timers' (see _clock_time_get)
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
        if wake > run.timer_base_ns():
            rep = run.new_pollable(wake)
            try:
                run.wait_any([rep])  # traps at the run's deadline; a deterministic run's clock jumps instead
            finally:
                run.drop_pollable(rep)
        now = run.timer_base_ns()
        ready = [(userdata, EVENTTYPE_CLOCK, 0) for w, userdata in clocks if w <= now] or [
            (clocks[0][1], EVENTTYPE_CLOCK, 0)
        ]
    events = b"".join(_EVENT.pack(userdata, ERRNO_SUCCESS, kind, nbytes, 0) for userdata, kind, nbytes in ready)
    base, size = _memory(caller)
    _write(base, size, out_ptr, events)
    _write(base, size, nevents_ptr, _U32.pack(len(ready)))
    return ERRNO_SUCCESS


def _clock_time_get(run: RunState, caller: Any, clock_id: int, precision: int, out_ptr: int) -> int:
    """The host's own clocks for realtime and monotonic time, or a deterministic run's virtual ones.

    Every instance, including those copied from the warm template, then shares
    one monotonic clock (the host's), so times the template remembered stay
    comparable, and `poll_oneoff` can take absolute monotonic deadlines as they are.
    A deterministic run (`RunState.virtual`) reads every clock, CPU time included,
    from its virtual time.
    """
    if clock_id == CLOCK_REALTIME:
        now = run.wall_ns()
    elif clock_id == CLOCK_MONOTONIC or run.virtual is not None:
        now = run.monotonic_ns()
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
    run.exit_code = code & MASK32
    raise Trap("guest exited")


def _door(run: RunState, caller: Any, req_ptr: int, req_len: int, out_ptr_ptr: int, out_len_ptr: int) -> int:
    """``host.call(frame) -> bytes``: the only way the shim reaches the host (see wasmrun_scientific.py)."""
    instance = _instance(run)
    # The instance's own exports, looked up once (`caller.get` builds new wrappers on every call).
    memory, alloc = instance.memory, instance.alloc
    base, size = _memory(caller, memory)
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
    if alloc is None:
        found = caller.get("host_alloc")
        if not isinstance(found, wasmtime.Func):
            return -2
        alloc = found
    pointer = alloc(caller, max(1, len(reply))) & MASK32
    if pointer == 0:
        return -2
    base, size = _memory(caller, memory)  # host_alloc may have grown the memory
    _write(base, size, pointer, reply)
    _write(base, size, out_ptr_ptr, _U32.pack(pointer))
    _write(base, size, out_len_ptr, _U32.pack(len(reply)))
    return 0


def _random_get(run: RunState, caller: Any, buf: int, length: int) -> int:
    """Entropy: the host's, or a deterministic run's seeded stream (`RunState.random_bytes`)."""
    data = run.random_bytes(length & MASK32)
    base, size = _memory(caller)
    _write(base, size, buf, data)
    return ERRNO_SUCCESS


SHADOWS: dict[tuple[str, str], Callable[..., int]] = {
    ("wasi_snapshot_preview1", "random_get"): _random_get,
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


def trap_text(exc: BaseException) -> str:
    """wasmtime's trap, named with the words `_result.classify_trap` looks for."""
    code = getattr(exc, "trap_code", None)
    if code == wasmtime.TrapCode.INTERRUPT:
        return f"wasm trap: interrupt (epoch deadline)\n{exc}"
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return f"all fuel consumed\n{exc}"
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return f"call stack exhausted\n{exc}"
    return str(exc)
