"""The guest's view of the operating system: a deny-by-default WASI preview 2 host.

wasmtime's own WASI implementation (`Linker.add_wasip2`) blocks the host thread
inside `poll`/`pollable.block` for as long as the guest asks, so `time.sleep(60)`
or `select.select([], [], [], 60)` would outlive any deadline: epoch and fuel
interruption only act while wasm code runs, not while the host sleeps for it.
Patching `time.sleep` inside the guest is no defence, since guest code can get
the real function back.

So wasmrun implements every WASI interface that can block or reach the outside
world itself, in Python, and keeps wasmtime's implementation only for the
harmless ones (environment, terminal queries):

* `wasi:io/poll` and `wasi:clocks/monotonic-clock`: real timers, but every wait
  is bounded by the run's deadline; when the deadline passes the host traps the
  guest (kind ``timeout``) instead of sleeping on.
* `wasi:clocks/*` and `wasi:random/random`: the host's clocks and entropy, or a
  deterministic run's virtual ones (`RunState.virtual`, see `wasmrun._determinism`).
* `wasi:io/streams` and `wasi:cli/std*`: stdout/stderr go into per-run buffers
  with byte caps (kind ``output_limit`` when exceeded, with the output kept up
  to the cap); stdin is always at end-of-file, so `input()` raises EOFError.
* `wasi:filesystem/*` and `wasi:sockets/*`: no preopened directories and no
  network. Every function exists (the component imports them) but answers
  "not permitted", or traps when its type has no error case.

Resource types are defined here once, by name, so that the same resource
(`pollable`, `input-stream`, ...) has one identity in every interface that uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wasmtime import Engine, WasmtimeError
from wasmtime.component import (
    BorrowType,
    Component,
    ComponentInstanceType,
    EnumType,
    FuncType,
    Linker,
    LinkerInstance,
    ListType,
    ResourceHost,
    ResourceType,
    ResultType,
    Variant,
)

from ..._runstate import RunState, Trap, current_run
from . import _fastcall
from ._vfs import FsError, VirtualFS

# Interfaces whose wasmtime implementation is kept: none of them can block, and
# none touches a resource that the shadowed interfaces define.
_KEEP_NATIVE = (
    "wasi:cli/environment",
    "wasi:cli/terminal-",
)

# Preferred "denied" answers for the error enums of filesystem and sockets.
_DENIAL_CASES = ("not-permitted", "access-denied", "access", "not-supported", "unsupported")

STDIN, STDOUT, STDERR = 0, 1, 2


class Ok:
    """A successful WIT `result`, lowered with or without a tag as its type requires."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value


class Err:
    """A failed WIT `result`."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value


class _Datetime:
    """A `wasi:clocks/wall-clock` datetime record (wasmtime-py lowers records from attributes)."""

    __slots__ = ("nanoseconds", "seconds")

    def __init__(self, ns: int) -> None:
        self.seconds, self.nanoseconds = divmod(ns, 1_000_000_000)


# `stream-error` is an untagged variant in wasmtime-py (its cases have disjoint
# Python types), so its payload-less `closed` case is spelled `None`.
CLOSED = Err(None)


def _adapt(fty: FuncType, impl: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Wrap `impl` so that it sees the current RunState and plain values.

    * Borrowed resources are turned into their integer `rep`.
    * `Ok`/`Err` returns are lowered to what wasmtime-py expects for the result type.
    * Every failure becomes a wasmtime trap; nothing (not even KeyboardInterrupt)
      propagates through the ctypes callback, which would crash the host.
    """
    # Every borrowed parameter is converted: one left unconverted is still lent
    # when the call returns, which wasmtime traps on ("borrow handles still remain
    # at the end of the call"). Two in one call (`rename-at`) need wasmtime >= 51:
    # 50 trapped on the second ("deferred host scope has no call context").
    borrow_positions = {i for i, (_, ty) in enumerate(fty.params) if isinstance(ty, BorrowType)}
    borrow_lists = {
        i for i, (_, ty) in enumerate(fty.params) if isinstance(ty, ListType) and isinstance(ty.element, BorrowType)
    }
    converted = borrow_positions | borrow_lists
    result_ty = fty.result
    tagged = isinstance(result_ty, ResultType) and result_ty._tagged()

    def lower(value: Any) -> Any:
        if isinstance(value, Ok):
            return Variant("ok", value.value) if tagged else value.value
        if isinstance(value, Err):
            return Variant("err", value.value) if tagged else value.value
        return value

    def host_func(store: Any, *args: Any) -> Any:
        try:
            run = current_run()
            if converted:
                args = tuple(
                    a.to_host(store).rep
                    if i in borrow_positions
                    else [r.to_host(store).rep for r in a]
                    if i in borrow_lists
                    else a
                    for i, a in enumerate(args)
                )
            return lower(impl(run, *args))
        except Trap as trap:
            raise WasmtimeError(f"wasmrun: {trap}") from None
        except BaseException as exc:  # noqa: BLE001 - never let anything cross the boundary
            run = current_run(required=False)
            if run is not None:
                run.internal_error = run.internal_error or f"{name}: {type(exc).__name__}: {exc}"
            raise WasmtimeError(f"wasmrun: host function {name} failed") from None

    return host_func


class _Implementations:
    """The WASI functions wasmrun implements itself, keyed by interface then name."""

    def __init__(self, resource_id: Callable[[str], int]) -> None:
        self.pollable = resource_id("pollable")
        self.input_stream = resource_id("input-stream")
        self.output_stream = resource_id("output-stream")
        self.descriptor = resource_id("descriptor")
        self.dirlist = resource_id("directory-entry-stream")
        self.error = resource_id("error")
        self.network = resource_id("network")

    # -- pollables -----------------------------------------------------------
    def _timer(self, run: RunState, deadline_ns: int) -> ResourceHost:
        return ResourceHost.own(run.new_pollable(deadline_ns), self.pollable)

    def _ready(self, run: RunState) -> ResourceHost:
        return ResourceHost.own(run.new_pollable(0), self.pollable)

    def table(self) -> dict[str, dict[str, Callable[..., Any]]]:
        def poll(run: RunState, reps: list[int]) -> list[int]:
            return run.wait_any(reps)

        def block(run: RunState, rep: int) -> None:
            run.wait_any([rep])

        def ready(run: RunState, rep: int) -> bool:
            return run.pollable_ready(rep)

        def write(run: RunState, rep: int, data: bytes) -> Ok | Err:
            if rep in (STDOUT, STDERR):
                run.write_output(rep, data)
                return Ok(None)
            try:
                _vfs(run).stream_write(rep, bytes(data))
            except FsError as exc:
                if exc.code == "insufficient-space":
                    return full(run)
                return Err(ResourceHost.own(1, self.error))
            except KeyError:
                return Err(ResourceHost.own(1, self.error))
            return Ok(None)

        def full(run: RunState) -> Err:
            """A file write past the scratch quota.

            The guest cannot be told ``ENOSPC``: its libc (wasi-libc's wasip2 target,
            ``wasip2_handle_write_error``) turns every failed stream write into ``EIO``
            without asking ``filesystem-error-code``, which the component does not even
            import, so no answer of ours can reach it. The guest sees ``OSError: [Errno
            29] I/O error``, and a note on stderr says why, once per run.
            """
            fs = files_of(run)
            if fs is not None and not fs.quota_reported:
                fs.quota_reported = True
                quota = f"Limits.max_scratch_bytes = {fs.quota_bytes:,}"
                run.write_output(STDERR, f"wasmrun: write refused: the scratch quota is full ({quota})\n".encode())
            return Err(ResourceHost.own(1, self.error))

        def check_write(run: RunState, rep: int) -> Ok | Err:
            fs = files_of(run)
            if fs is not None and fs.has_stream(rep) and fs.used_bytes >= fs.quota_bytes:
                return full(run)  # refused before the data crosses over
            return Ok(1 << 16)

        def read(run: RunState, rep: int, n: int) -> Ok | Err:
            fs = files_of(run)
            if rep == STDIN or fs is None or not fs.has_stream(rep):
                return CLOSED
            chunk = fs.stream_read(rep, n)
            return CLOSED if chunk is None else Ok(chunk)

        def fs(method: Callable[..., Any], wrap: Callable[[Any], Any] = lambda v: v) -> Callable[..., Any]:
            def call(run: RunState, *args: Any) -> Ok | Err:
                try:
                    return Ok(wrap(method(_vfs(run), *args)))
                except FsError as exc:
                    return Err(exc.code)

            return call

        def own_desc(rep: int) -> ResourceHost:
            return ResourceHost.own(rep, self.descriptor)

        def own_in(rep: int) -> ResourceHost:
            return ResourceHost.own(rep, self.input_stream)

        def own_out(rep: int) -> ResourceHost:
            return ResourceHost.own(rep, self.output_stream)

        V = VirtualFS
        filesystem: dict[str, Callable[..., Any]] = {
            "[method]descriptor.open-at": fs(
                lambda v, rep, pflags, path, oflags, dflags: v.open_at(rep, path, oflags, dflags), own_desc
            ),
            "[method]descriptor.stat": fs(V.stat),
            "[method]descriptor.stat-at": fs(lambda v, rep, pflags, path: v.stat_at(rep, path)),
            "[method]descriptor.metadata-hash": fs(lambda v, rep: v.metadata_hash(v._desc(rep).path)),
            "[method]descriptor.metadata-hash-at": fs(
                lambda v, rep, pflags, path: v.metadata_hash(v._normalise(v._desc(rep).path, path))
            ),
            "[method]descriptor.get-flags": fs(V.get_flags),
            "[method]descriptor.read": fs(V.read),
            "[method]descriptor.write": fs(lambda v, rep, data, off: v.write(rep, bytes(data), off)),
            "[method]descriptor.set-size": fs(V.set_size),
            "[method]descriptor.sync": fs(lambda v, rep: None),
            "[method]descriptor.sync-data": fs(lambda v, rep: None),
            "[method]descriptor.advise": fs(lambda v, rep, off, length, advice: None),
            "[method]descriptor.create-directory-at": fs(V.create_directory_at),
            "[method]descriptor.unlink-file-at": fs(V.unlink_file_at),
            "[method]descriptor.remove-directory-at": fs(V.remove_directory_at),
            "[method]descriptor.rename-at": fs(V.rename_at),
            "[method]descriptor.read-directory": fs(V.read_directory, lambda r: ResourceHost.own(r, self.dirlist)),
            "[method]directory-entry-stream.read-directory-entry": fs(V.read_directory_entry),
            "[method]descriptor.read-via-stream": fs(lambda v, rep, off: v.open_stream(rep, off, write=False), own_in),
            "[method]descriptor.write-via-stream": fs(lambda v, rep, off: v.open_stream(rep, off, write=True), own_out),
            "[method]descriptor.append-via-stream": fs(
                lambda v, rep: v.open_stream(rep, 0, write=True, append=True), own_out
            ),
        }

        def preopens(run: RunState) -> list[tuple[Any, str]]:
            fs = files_of(run)
            if fs is None:
                return []
            return [(own_desc(rep), path) for rep, path in fs.preopens()]

        def exit_(run: RunState, status: Any) -> None:
            run.exit_code = 0 if isinstance(status, Variant) and status.tag == "ok" else 1
            raise Trap("guest exited")

        def exit_with_code(run: RunState, code: int) -> None:
            run.exit_code = code
            raise Trap("guest exited")

        return {
            "wasi:cli/exit": {"exit": exit_, "exit-with-code": exit_with_code},
            # A network handle that every socket function then refuses.
            "wasi:sockets/instance-network": {
                "instance-network": lambda run: ResourceHost.own(1, self.network),
            },
            "wasi:io/poll": {
                "poll": poll,
                "[method]pollable.block": block,
                "[method]pollable.ready": ready,
            },
            "wasi:clocks/monotonic-clock": {
                "now": lambda run: run.monotonic_ns(),
                "resolution": lambda run: 1_000,
                "subscribe-instant": lambda run, when: self._timer(run, when),
                "subscribe-duration": lambda run, d: self._timer(run, run.timer_base_ns() + d),
            },
            "wasi:clocks/wall-clock": {
                "now": lambda run: _Datetime(run.wall_ns()),
                "resolution": lambda run: _Datetime(1_000),
            },
            "wasi:random/random": {"get-random-bytes": lambda run, n: run.random_bytes(n)},
            "wasi:io/streams": {
                "[method]output-stream.check-write": check_write,
                "[method]output-stream.write": write,
                "[method]output-stream.blocking-write-and-flush": write,
                "[method]output-stream.flush": lambda run, rep: Ok(None),
                "[method]output-stream.blocking-flush": lambda run, rep: Ok(None),
                "[method]output-stream.subscribe": lambda run, rep: self._ready(run),
                "[method]input-stream.read": read,
                "[method]input-stream.blocking-read": read,
                "[method]input-stream.skip": read,
                "[method]input-stream.blocking-skip": read,
                "[method]input-stream.subscribe": lambda run, rep: self._ready(run),
            },
            "wasi:cli/stdout": {"get-stdout": lambda run: ResourceHost.own(STDOUT, self.output_stream)},
            "wasi:cli/stderr": {"get-stderr": lambda run: ResourceHost.own(STDERR, self.output_stream)},
            "wasi:cli/stdin": {"get-stdin": lambda run: ResourceHost.own(STDIN, self.input_stream)},
            "wasi:filesystem/types": filesystem,
            "wasi:filesystem/preopens": {"get-directories": preopens},
        }


def files_of(run: RunState) -> VirtualFS | None:
    """The run's virtual filesystem (the default image keeps it in `RunState.guest`); None: no filesystem."""
    fs: VirtualFS | None = run.guest
    return fs


def _vfs(run: RunState) -> VirtualFS:
    fs = files_of(run)
    if fs is None:
        raise FsError("not-permitted")
    return fs


def _interface(import_name: str) -> str:
    return import_name.split("@", 1)[0]


def _denial(fty: FuncType, name: str) -> Callable[..., Any]:
    result_ty = fty.result
    if isinstance(result_ty, ResultType) and isinstance(result_ty.err, EnumType):
        names = result_ty.err.names
        case = next((c for c in _DENIAL_CASES if c in names), names[0])
        return lambda run, *args: Err(case)

    def trap(run: RunState, *args: Any) -> None:
        raise Trap(f"{name} is not available in the sandbox")

    return trap


def install(
    linker: Linker,
    engine: Engine,
    component: Component,
    extra: dict[str, dict[str, Callable[..., Any]]],
    fast: dict[str, Callable[[LinkerInstance], bool]] | None = None,
) -> None:
    """Define wasmrun's WASI for every import of `component` on `linker`.

    Call after `linker.add_wasip2()`: the interfaces listed in `_KEEP_NATIVE`
    keep wasmtime's implementation, every other `wasi:*` import is replaced.
    `extra` maps further interfaces (wasmrun's own) to their implementations;
    an import that is neither WASI nor in `extra` fails the link. `fast` may
    define a whole interface itself (returning True) instead of the generic path.
    """
    linker.allow_shadowing = True
    resource_ids: dict[str, int] = {}
    dtors: dict[str, Callable[[Any, int], None]] = {}

    def resource_id(name: str) -> int:
        return resource_ids.setdefault(name, len(resource_ids) + 1)

    impls = _Implementations(resource_id)

    def dropper(action: Callable[[RunState, int], None]) -> Callable[[Any, int], None]:
        def drop(store: Any, rep: int) -> None:
            run = current_run(required=False)
            if run is not None:
                action(run, rep)

        return drop

    def drop_file(method: Callable[[VirtualFS, int], None]) -> Callable[[RunState, int], None]:
        return lambda run, rep: method(fs, rep) if (fs := files_of(run)) is not None else None

    dtors["pollable"] = dropper(RunState.drop_pollable)
    dtors["descriptor"] = dropper(drop_file(VirtualFS.drop_descriptor))
    dtors["input-stream"] = dropper(drop_file(VirtualFS.drop_stream))
    dtors["output-stream"] = dropper(drop_file(VirtualFS.drop_stream))
    dtors["directory-entry-stream"] = dropper(drop_file(VirtualFS.drop_dirlist))
    table = {**impls.table(), **extra}

    with linker.root() as root:
        for import_name, extern in component.type.imports(engine).items():
            if import_name.startswith(_KEEP_NATIVE):
                continue
            ity = extern.ty
            assert isinstance(ity, ComponentInstanceType)
            provided = table.get(_interface(import_name), {})
            with root.add_instance(import_name) as inst:
                installer = (fast or {}).get(_interface(import_name))
                if installer is not None and installer(inst):
                    continue
                for name, item in ity.exports(engine).items():
                    ty = item.ty
                    if isinstance(ty, ResourceType):
                        inst.add_resource(
                            name,
                            ResourceType.host(resource_id(name)),
                            dtors.get(name, _ignore_drop),
                        )
                    elif isinstance(ty, FuncType):
                        full = f"{_interface(import_name)}#{name}"
                        impl = provided.get(name) or _denial(ty, full)
                        host_func = _adapt(ty, impl, full)
                        if not _fastcall.add_func(inst, name, ty, host_func, full):
                            inst.add_func(name, host_func)


def _ignore_drop(store: Any, rep: int) -> None:
    return None
