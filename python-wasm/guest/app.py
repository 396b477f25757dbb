"""The wasmrun guest runner: the Python half of the sandbox that lives *inside* the guest.

componentize-py imports this module at build time and snapshots the interpreter
afterwards, so everything done at module level here is paid once, at build time,
and every run starts from that pristine snapshot in a fresh instance.

Nothing in this file is a security boundary. Guest code runs in the same
interpreter and may tamper with any of it; the limits that matter (fuel, memory,
deadline, output caps, which host functions exist) are enforced by the host.
This shim only makes ordinary code convenient: REPL-style value of the last
expression, tracebacks that point at the user's lines, and `import tools`.

The image-independent part of that (shared with the scientific image) is
`wasmrun_core`; this module is the component image's glue: the standard
library preload, output capture through `host.output`, tool calls through
`host.call`, and the `run` export.
"""

from __future__ import annotations

import sys

# --------------------------------------------------------------------------
# Standard library preload.
#
# The snapshot holds only modules imported at build time: the guest has no
# filesystem to import from later. So import the whole standard library that
# can be imported without an OS facility, package by package, and let whatever
# fails to import (sockets, ssl, sqlite3, curses, ...) stay absent: importing
# it later raises a clean ModuleNotFoundError.
# --------------------------------------------------------------------------

# Modules that must not be imported: they have side effects on import, drive
# an interactive UI, or are test/packaging machinery nobody needs in a sandbox.
_SKIP_TOP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo",
    "test", "lib2to3", "ensurepip", "venv", "distutils", "pydoc_data",
    "__phello__", "__hello__", "_pyrepl", "sqlite3", "ctypes", "curses", "dbm",
    "readline", "msilib", "winreg", "winsound", "msvcrt", "nt", "_winapi",
    "multiprocessing", "concurrent", "xxsubtype", "xxlimited", "_testcapi",
    "_testinternalcapi", "_testbuffer", "_testimportmultiple", "_testmultiphase",
    "_testsinglephase", "_xxtestfuzz", "_ctypes_test", "_testclinic",
    "_testlimitedcapi", "_testexternalinspection", "_remote_debugging",
    "webbrowser", "pty", "tty", "getpass", "_android_support", "_ios_support",
    "_apple_support", "site",
}
_SKIP_SUB = ("test", "tests", "idle_test", "__main__", "_test")


def _preload() -> list[str]:
    import importlib
    import pkgutil

    loaded: list[str] = []

    def try_import(name: str) -> object | None:
        try:
            module = importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - any failure means "not available here"
            return None
        loaded.append(name)
        return module

    for top in sorted(sys.stdlib_module_names):
        if top in _SKIP_TOP or top.startswith("_test"):
            continue
        module = try_import(top)
        path = getattr(module, "__path__", None)
        if module is None or path is None:
            continue
        for info in pkgutil.walk_packages(path, prefix=top + "."):
            parts = info.name.split(".")
            if any(p in _SKIP_SUB or p.startswith("test_") for p in parts):
                continue
            try_import(info.name)
    return loaded


from collections.abc import Callable  # noqa: E402


def _use_up_free_memory() -> list[object]:
    """Take every free block of the guest's allocators and keep it, so that runs allocate fresh memory.

    Importing the standard library leaves thousands of free blocks scattered over
    the snapshot heap: in malloc's free lists, in pymalloc's pools (one pool of
    4 KiB per size class, 8 to 512 bytes in steps of 8) and in the interpreter's
    free lists of floats, ints, tuples, lists, dicts, bound methods... A run that
    allocates from them writes one snapshot page per object, and each write is a
    copy-on-write page fault of a fresh instance (the costliest part of a short
    run, and the reason threads do not scale). With the free blocks used up, a
    run's objects come from the top of the heap, packed together in memory that
    is not part of the snapshot. Costs the snapshot's free bytes (a few MiB of
    address space, zero-filled, never touched).

    `id()` is an object's address: anything at or above `top` came from the top
    of the heap, i.e. no free block of that kind is left.
    """
    held: list[object] = []
    probe = bytes(4 << 20)  # larger than any free block: comes from the top of the heap
    top = id(probe)
    del probe

    def drain(make: Callable[[object], object]) -> None:
        last: object = None
        for _ in range(1_000_000):  # a bound, so that a surprise can never hang the build
            last = make(last)
            if id(last) >= top:
                return
            held.append(last)

    for shift in range(1, 13):  # malloc: blocks above pymalloc's 512 bytes, largest first
        drain(lambda _, n=(4 << 20) >> shift: bytes(n))
    drain(lambda _: bytes(512 - 16))  # the smallest block malloc gets (513 bytes: code objects, tables...)
    for n in range(512 - 17, 0, -8):  # pymalloc size classes 24..512 (a bytes object is 17 bytes + n)
        drain(lambda _, n=n: bytes(n))
    # The interpreter's free lists, each followed by pymalloc's pools of the same size.
    drain(lambda _: object())  # 8 bytes
    drain(lambda last: (last if isinstance(last, float) else 0.5) + 1.0)  # floats: 16 bytes
    drain(lambda last: (last if isinstance(last, int) else 1 << 20) + 1)  # ints above the small-int cache
    for size in range(1, 21):
        items = [None] * size
        drain(lambda _, items=items: tuple(items))
    drain(lambda _: [])
    drain(lambda _: {})
    drain(lambda _: {"key": None})  # a dict with its keys object
    drain(lambda _: iter(()))
    drain(lambda _: iter([]))
    drain(lambda _: range(1))
    drain(lambda _: iter(range(1)))
    drain(lambda _: slice(1))
    drain(lambda _: held.append)  # builtin bound methods

    class Probe:
        def method(self) -> None:
            pass

    probe_object = Probe()
    drain(lambda _: probe_object.method)  # bound Python methods
    return held


PRELOADED = _preload()
# Taken now, the standard library's free blocks cannot receive the shim's own objects below: those are
# then packed together at the top of the heap, and the few pages a run touches of them are few.
_HELD = [_use_up_free_memory()]

import io  # noqa: E402

import wit_world  # noqa: E402
import wasmrun_core as _core  # noqa: E402
import wasmrun_eval  # noqa: E402, F401  (wasmrun eval's guard, in the snapshot: see its docstring)
from componentize_py_types import Err  # noqa: E402
from wit_world.imports import host as _host  # noqa: E402

if "asyncio.selector_events" in sys.modules:  # preloaded: patch the snapshot's copy once, at build time
    _core.socketless_event_loop(sys.modules["asyncio.selector_events"])
if "threading" in sys.modules:
    _core.solo_threading(sys.modules["threading"])
if "queue" in sys.modules:
    _core.solo_queue(sys.modules["queue"])

_core.SHIM_FILES.add(__file__)

# The bindings as componentize-py made them, for the shim's own use. Guest code that imports
# `wit_world.imports.host` gets the checked versions below instead.
_raw_call = _host.call
_raw_output = _host.output


def _wit_string(value: object, what: str) -> None:
    """Refuse what cannot become a WIT string with a Python error.

    componentize-py cannot lower a lone surrogate into a WIT string: it executes
    `unreachable`, which kills the whole instance (the run ends as a GuestCrash).
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    value.encode("utf-8")  # UnicodeEncodeError ("surrogates not allowed") names the position


def _checked_call(name: str, args: str) -> str:
    """`host.call` for guest code: invalid text is a Python error, not a crash."""
    _wit_string(name, "name")
    _wit_string(args, "args")
    return _raw_call(name, args)  # type: ignore[no-any-return]


def _checked_output(fd: int, text: str) -> None:
    """`host.output` for guest code: invalid text or fd is a Python error, not a crash."""
    if not isinstance(fd, int) or not 0 <= fd < 2**32:
        raise ValueError(f"fd must be an int in [0, 2**32), not {fd!r}")
    _wit_string(text, "text")
    _raw_output(fd, text)


_checked_call.__name__ = _checked_call.__qualname__ = "call"
_checked_output.__name__ = _checked_output.__qualname__ = "output"
_host.call, _host.output = _checked_call, _checked_output  # type: ignore[assignment]

import errno  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402


def _rename(src: object, dst: object, *, src_dir_fd: object = None, dst_dir_fd: object = None) -> None:
    """`os.rename`/`os.replace` for files in the run's virtual /work, without ``rename-at``.

    wasmtime 50 traps on ``descriptor.rename-at`` (two borrowed descriptors in one
    host call: "deferred host scope has no call context"), which would crash the
    run. The filesystem is the run's own in-memory one, where nothing can observe
    a half-done rename, so a rename copies the file and removes the source.
    Renaming directories is refused (``EXDEV``, as across filesystems).
    """
    if src_dir_fd is not None or dst_dir_fd is not None:
        raise NotImplementedError("dir_fd unavailable on this platform")
    src, dst = os.fspath(src), os.fspath(dst)
    info = os.stat(src)
    if stat.S_ISDIR(info.st_mode):
        raise OSError(errno.EXDEV, "renaming a directory is not supported in the sandbox", src)
    if os.path.isdir(dst):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), dst)
    if os.path.abspath(src) == os.path.abspath(dst):
        return
    with open(src, "r+b") as f:  # PermissionError for a read-only input file, before anything changes
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data)
    os.unlink(src)


os.rename = os.replace = _rename


class _Capture(io.TextIOBase):
    """sys.stdout/sys.stderr for one run: line-buffered, like a terminal.

    Each flush is one host call (`host.output`, ~50 us through wasmtime-py), so
    text is gathered until a newline, 32 KiB, or the end of the run, where the
    unflushed rest travels back in the outcome itself. Flushing at every newline
    means the partial output of a run that traps (deadline, fuel, memory) is kept
    up to its last complete line.
    """

    CHUNK = 32 * 1024

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._parts: list[str] = []
        self._size = 0
        self.buffer = _BinaryCapture(self)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._parts.append(text)
        self._size += len(text)
        if "\n" in text or self._size >= self.CHUNK:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._parts:
            _raw_output(self._fd, self.take().encode("utf-8", "replace").decode("utf-8"))

    def take(self) -> str:
        text = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        return text

class _BinaryCapture(io.RawIOBase):
    """`sys.stdout.buffer`: bytes are decoded as UTF-8 (invalid bytes replaced)."""

    def __init__(self, text: _Capture) -> None:
        self._text = text

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        self._text.write(bytes(view).decode("utf-8", "replace"))
        return len(view)

    def flush(self) -> None:
        self._text.flush()


def _call(name: str, payload: str) -> str:
    """A tool call through the component import `host.call`."""
    try:
        return _raw_call(name, payload)
    except Err as err:
        raise _core.ToolError(str(err.value)) from None


# The run's stdout/stderr, made now so that a run only points sys.stdout/sys.stderr
# at them: building them per run touches ~65 pages of class machinery in the
# snapshot. Each instance serves one user run, and every run ends with `take()`.
_STDOUT = _Capture(1)
_STDERR = _Capture(2)


def _warm_up(world: object) -> None:
    """Run the shim a few times now, at build time, so that every run finds its work already done.

    CPython's adaptive interpreter specialises bytecode in place (inline caches and
    counters inside the code objects) and fills the type attribute cache as code
    runs. Done here, those writes land in the snapshot; otherwise every fresh run
    would make them again, one copy-on-write page fault per code object it runs.
    The warm-up makes no host calls (nothing is printed, no tools); what it
    leaves behind (line cache entry, `tools` module) is reset or is what a run
    without tools installs anyway.
    """
    sys.stdout, sys.stderr = _STDOUT, _STDERR  # for good: a run finds them in place (see `WitWorld.run`)
    requests = [
        {"code": code, "recursion_limit": 1000, "max_value_chars": 1000, "seed": None, "entropy": 1,
         "deterministic": False, "tools": [], "cwd": None, "session_call": 0}
        for code in ("x = 1\nx", "1", "pass", "def f(a):\n    return a\nf(1)", "y = [i for i in range(3)]")
    ]
    for _ in range(8):
        for request in requests:
            _random.seed = _seed_at_first_run  # as in a new instance
            world.run(_core.json.dumps(request))  # type: ignore[attr-defined]
        _STDOUT.write("1")  # the capture's own path, without the host call of a flush
        _STDOUT.take()
    import linecache

    linecache.cache.pop(_core.FILENAME, None)


import random as _random  # noqa: E402

_RANDOM_SEED = _random.seed  # the real one (the end of this module explains why it is swapped)


class WitWorld(wit_world.WitWorld):
    def run(self, request: str) -> str:
        if _random.seed is not _RANDOM_SEED:  # the first run of an instance (see the end of this module)
            _random.seed = _RANDOM_SEED
        if sys.stdout is not _STDOUT or sys.stderr is not _STDERR:  # put back by the snapshot; code may move them
            sys.stdout, sys.stderr = _STDOUT, _STDERR
        for stream in (_STDOUT, _STDERR):  # a session's earlier call may have left text behind
            if stream._parts:
                stream.take()
        outcome = _core.run_request(request, _call)
        # The unflushed tail of the output travels back in the outcome itself.
        for key, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            try:
                outcome[key] = stream.take().encode("utf-8", "replace").decode() if isinstance(stream, _Capture) else ""
            except BaseException:  # noqa: BLE001
                outcome[key] = ""
        # Lone surrogates (e.g. in an exception message) cannot cross the WIT
        # string boundary; replace them rather than fail the whole outcome.
        return _core.encode_outcome(outcome)


# componentize-py calls `random.seed()` when an instance starts (the one of the snapshot would repeat
# in every instance); that reads 2.5 KB of entropy over ~10 WASI calls. The shim seeds `random` itself,
# from entropy the host sends with the request, so componentize-py gets a stand-in, and the first run
# of the instance puts the real `random.seed` back before any guest code can see it.


def _seed_at_first_run(*args: object, **kwargs: object) -> None:
    """Stands in for `random.seed` until the instance's first run (which seeds `random`)."""


import gc  # noqa: E402

# From here on nothing adds a global to this module: that would invalidate the lookups the warm-up
# specialised.
_warm_up(WitWorld())

# componentize-py empties `os.environ` and `sys.argv` after this module (the build's are not the run's):
# done now, before the free memory is taken below, the blocks they free are not left to the runs.
os.environ.clear()
sys.argv.clear()

# Everything imported so far lives as long as the instance: move it out of the
# cyclic GC's sight, so a collection during a run walks only the run's objects
# instead of touching (and copying-on-write) every page of the snapshot heap.
gc.collect()
_HELD.append(_use_up_free_memory())
gc.freeze()
_random.seed = _seed_at_first_run
