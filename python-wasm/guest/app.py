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
`wasmrun_core`; the component image's glue at run time (output capture through
`host.output`, tool calls through `host.call`, the `run` export) is
`wasmrun_component`. This module is the build-time half: the standard library
preload, and a snapshot prepared so that a fresh run writes as few of its pages
as possible (each page a run writes is a copy-on-write fault of the new
instance): free memory used up, the shim warmed, `random` seeded by the host.
"""

from __future__ import annotations

import sys


def _place_random() -> None:
    """Give `random` a generator whose state lies within one page, before any module binds its methods.

    Every run seeds `random` (from the host's entropy), which writes the whole
    Mersenne Twister state (2.5 KB); where the generator made at import happens
    to straddle a page boundary, that is two pages for every run instead of one.
    """
    import random

    old = random._inst
    inst, spare = old, []
    while id(inst) % 4096 + 2512 > 4096 and len(spare) < 16:  # refcount .. end of the state
        spare.append(inst)  # kept until the search ends, so that malloc does not hand the block back
        inst = random.Random()
    for name, value in list(vars(random).items()):
        if getattr(value, "__self__", None) is old:  # `seed`, `random`, `choice`...: bound to the generator
            setattr(random, name, getattr(inst, name))
    random._inst = inst


_place_random()

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

    class Probe:
        def method(self) -> None:
            pass

    probe_object = Probe()
    tuple_items = [[None] * size for size in range(1, 21)]
    # Every object the draining itself needs is made now and kept: a temporary made before its size
    # class is drained would sit in an old block and leave a hole there when freed.
    by_size: list[Callable[[object], object]] = [
        *(lambda _, n=(4 << 20) >> shift: bytes(n) for shift in range(1, 13)),  # malloc, largest first
        lambda _: bytes(512 - 16),  # the smallest block malloc gets (513 bytes: code objects, tables...)
        *(lambda _, n=n: bytes(n) for n in range(512 - 17, 0, -8)),  # pymalloc classes 24..512 (17 + n)
        lambda _: object(),  # 8 bytes
    ]
    # The interpreter's free lists, each followed by pymalloc's pools of the same size.
    free_listed: list[Callable[[object], object]] = [
        lambda last: (last if isinstance(last, float) else 0.5) + 1.0,  # floats: 16 bytes
        lambda last: (last if isinstance(last, int) else 1 << 20) + 1,  # ints above the small-int cache
        *(lambda _, items=items: tuple(items) for items in tuple_items),
        lambda _: [],
        lambda _: {},
        lambda _: {"key": None},  # a dict with its keys object
        lambda _: iter(()),
        lambda _: iter([]),
        lambda _: range(1),
        lambda _: iter(range(1)),
        lambda _: slice(1),
        lambda _: held.append,  # builtin bound methods
        lambda _: probe_object.method,  # bound Python methods
    ]
    order = by_size + free_listed
    held.extend((Probe, probe_object, tuple_items, by_size, free_listed, order))
    probe = bytes(4 << 20)  # larger than any free block: comes from the top of the heap
    top = id(probe)
    del probe
    # Twice: the second pass takes the blocks that temporaries of the first one (loop iterators,
    # list growth) left behind. What the passes themselves use is kept as well (`top`, the loops'
    # iterators): freed on return, each would leave a hole in an old page for a run's first object.
    counts = range(2100)
    passes = iter((1, 2))
    held.extend((top, counts, passes))
    for _ in passes:
        makers = iter(order)
        held.append(makers)
        for make in makers:
            last = make(None)
            if make in free_listed:
                # A free list hands out its most recently freed object first, which may be a new one
                # while older ones wait behind it: take more than any holds (2,000 tuples of a size).
                count = iter(counts)
                held.append(count)
                for _ in count:
                    held.append(last)
                    last = make(last)
            while id(last) < top and len(held) < 10_000_000:  # a bound: a surprise must not hang the build
                held.append(last)
                last = make(last)
            if not isinstance(last, bytes) or len(last) < 512:
                # Kept too: freed, it would be a free block that a run's first object of its kind takes, on a
                # page of its own (a page per size class). Freed malloc blocks merge back into the top instead.
                held.append(last)
    return held


PRELOADED = _preload()
# Taken now, the standard library's free blocks cannot receive the shim's own objects below: those are
# then packed together at the top of the heap, and the few pages a run touches of them are few.
_HELD = [_use_up_free_memory()]

import random as _random  # noqa: E402

import wasmrun_core as _core  # noqa: E402
import wasmrun_eval  # noqa: E402, F401  (wasmrun eval's guard, in the snapshot: see its docstring)
from wasmrun_component import STDERR, STDOUT, WitWorld  # noqa: E402

if "asyncio.selector_events" in sys.modules:  # preloaded: patch the snapshot's copy once, at build time
    _core.socketless_event_loop(sys.modules["asyncio.selector_events"])
if "threading" in sys.modules:
    _core.solo_threading(sys.modules["threading"])
if "queue" in sys.modules:
    _core.solo_queue(sys.modules["queue"])

_core.SHIM_FILES.add(__file__)

import os  # noqa: E402

__all__ = ["WitWorld"]


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
    sys.stdout, sys.stderr = STDOUT, STDERR  # for good: a run finds them in place (see `WitWorld.run`)
    requests = [
        {"code": code, "recursion_limit": 1000, "max_value_chars": 1000, "seed": None, "entropy": 1,
         "deterministic": False, "tools": [], "cwd": None, "session_call": 0}
        for code in ("x = 1\nx", "1", "pass", "def f(a):\n    return a\nf(1)", "y = [i for i in range(3)]")
    ]
    for _ in range(8):
        for request in requests:
            _random.seed = _seed_at_first_run  # as in a new instance
            world.run(_core.json.dumps(request))  # type: ignore[attr-defined]
        STDOUT.write("1")  # the capture's own path, without the host call of a flush
        STDOUT.take()
    import linecache

    linecache.cache.pop(_core.FILENAME, None)


# componentize-py calls `random.seed()` when an instance starts (the one of the snapshot would repeat
# in every instance); that reads 2.5 KB of entropy over ~10 WASI calls. The shim seeds `random` itself,
# from entropy the host sends with the request, so componentize-py gets a stand-in, and the first run
# of the instance puts the real `random.seed` back before any guest code can see it.


def _seed_at_first_run(*args: object, **kwargs: object) -> None:
    """Stands in for `random.seed` until the instance's first run (which seeds `random`)."""


import gc  # noqa: E402
import types  # noqa: E402


def _gather_code() -> None:
    """Copy the code objects of the shim's functions, so that the copies sit together in fresh memory.

    A call writes the reference counts of the function's code object (and the
    warm-up writes its inline caches): made at import, interleaved with
    everything else the modules define, they spread over many pages.
    """
    import wasmrun_component
    from wit_world.imports import host

    for module in (_core, wasmrun_component, host):
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == module.__name__:
                candidates = list(vars(value).values())
            else:
                candidates = [value]
            for function in candidates:
                if isinstance(function, types.FunctionType) and function.__module__ == module.__name__:
                    function.__code__ = function.__code__.replace()


_gather_code()

# After the warm-up nothing may add a global to the shim's modules (`wasmrun_core`,
# `wasmrun_component`): that would invalidate the lookups it specialised.
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
