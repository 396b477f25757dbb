"""The wasmrun guest runner: the Python half of the sandbox that lives *inside* the guest.

componentize-py imports this module at build time and snapshots the interpreter
afterwards, so everything done at module level here is paid once, at build time,
and every run starts from that pristine snapshot in a fresh instance.

Nothing in this file is a security boundary. Guest code runs in the same
interpreter and may tamper with any of it; the limits that matter (fuel, memory,
deadline, output caps, which host functions exist) are enforced by the host.
This shim only makes ordinary code convenient: REPL-style value of the last
expression, tracebacks that point at the user's lines, and `import tools`.
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


PRELOADED = _preload()

import ast  # noqa: E402
import builtins  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import linecache  # noqa: E402
import random  # noqa: E402
import traceback  # noqa: E402
import types  # noqa: E402

# Bound now, so that guest code replacing `json.dumps` cannot break the outcome.
_dumps = json.dumps
_loads = json.loads
# json.dumps builds a new encoder whenever it gets non-default options: build it once.
_ARGS_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False)

import wit_world  # noqa: E402
from componentize_py_types import Err  # noqa: E402
from wit_world.imports import host as _host  # noqa: E402

import io  # noqa: E402
import time  # noqa: E402


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
            _host.output(self._fd, self.take().encode("utf-8", "replace").decode("utf-8"))

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


# Everything imported so far lives as long as the instance: move it out of the
# cyclic GC's sight, so a collection during a run walks only the run's objects
# instead of touching (and copying-on-write) every page of the snapshot heap.
import gc  # noqa: E402

gc.collect()
gc.freeze()

FILENAME = "<code>"

# Error kinds; the host owns the vocabulary (wasmrun.ErrorKind).
SYNTAX, EXCEPTION, MEMORY, TOOL = "syntax", "exception", "memory", "tool"


class ToolError(Exception):
    """A tool call was refused or failed on the host. Catch it like any exception."""


ToolError.__module__ = "tools"
_SHIM_FILE = __file__


class _HostDefault:
    """A default value that only the host can build; shown by its repr in help()."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


def _make_tool(spec: dict) -> types.FunctionType:
    name = spec["name"]
    params = []
    for p in spec["params"]:
        kind = getattr(inspect.Parameter, p["kind"])
        if "default" in p:
            default = p["default"]
        elif "default_repr" in p:
            default = _HostDefault(p["default_repr"])
        else:
            default = inspect.Parameter.empty
        params.append(inspect.Parameter(p["name"], kind, default=default,
                                        annotation=p.get("annotation", inspect.Parameter.empty)))
    signature = inspect.Signature(params)
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    known = {p.name for p in params}
    required = [p.name for p in params if p.default is inspect.Parameter.empty]

    def tool(*args: object, **kwargs: object) -> object:
        # A lean `signature.bind` (this is on every tool call's path). Defaults
        # are applied by the host, which validates every call anyway.
        if len(args) > len(positional):
            raise TypeError(f"{name}() takes {len(positional)} positional arguments but {len(args)} were given")
        arguments = dict(zip(positional, args))
        for key, value in kwargs.items():
            if key not in known:
                raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
            if key in arguments:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
            arguments[key] = value
        missing = [key for key in required if key not in arguments]
        if missing:
            raise TypeError(f"{name}() missing required arguments: {', '.join(map(repr, missing))}")
        try:
            payload = _ARGS_ENCODER.encode(arguments)
        except (TypeError, ValueError) as exc:
            raise ToolError(f"{name}: arguments are not JSON-serialisable: {exc}") from None
        try:
            reply = _host.call(name, payload)
        except Err as err:
            raise ToolError(str(err.value)) from None
        return _loads(reply)

    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = spec.get("doc") or None
    tool.__signature__ = signature  # type: ignore[attr-defined]
    tool.__module__ = "tools"
    return tool  # type: ignore[return-value]


def _install_tools(specs: list[dict]) -> None:
    module = types.ModuleType("tools", "Host functions registered for this run.")
    module.ToolError = ToolError  # type: ignore[attr-defined]
    names = []
    for spec in specs:
        setattr(module, spec["name"], _make_tool(spec))
        names.append(spec["name"])
    module.__all__ = names  # type: ignore[attr-defined]
    sys.modules["tools"] = module


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not hide the real error
        return f"<{type(exc).__name__} with an unprintable message>"


def _error(kind: str, exc: BaseException, tb_text: str, lineno: int | None) -> dict:
    return {
        "kind": kind,
        "type": type(exc).__name__,
        "message": _safe_str(exc),
        "traceback": tb_text,
        "lineno": lineno,
    }


def _user_traceback(exc: BaseException) -> tuple[str, int | None]:
    """Format `exc` from the first frame of the user's code down; drop the shim's frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != FILENAME:
        tb = tb.tb_next
    lineno = None
    walk = tb
    while walk is not None:
        if walk.tb_frame.f_code.co_filename == FILENAME:
            lineno = walk.tb_lineno
        walk = walk.tb_next
    try:
        report = traceback.TracebackException(type(exc), exc, tb, compact=True)
        _strip_shim_frames(report, set())
        text = "".join(report.format())
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not kill the shim
        text = f"{type(exc).__name__}: <unprintable>\n"
    return text, lineno


def _strip_shim_frames(report: traceback.TracebackException | None, seen: set[int]) -> None:
    """The `tools` stubs live in this shim: show the user's call, not the plumbing."""
    if report is None or id(report) in seen:
        return
    seen.add(id(report))
    report.stack = traceback.StackSummary.from_list([f for f in report.stack if f.filename != _SHIM_FILE])
    _strip_shim_frames(report.__cause__, seen)
    _strip_shim_frames(report.__context__, seen)
    for inner in getattr(report, "exceptions", None) or ():
        _strip_shim_frames(inner, seen)


def _classify(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return MEMORY
    if isinstance(exc, ToolError):
        return TOOL
    return EXCEPTION


def _safe_repr(value: object, limit: int) -> tuple[str, bool]:
    text = repr(value)
    if len(text) > limit:
        return text[:limit], True
    return text, False


def _execute(req: dict) -> dict:
    code: str = req["code"]
    sys.stdout = _Capture(1)
    sys.stderr = _Capture(2)
    sys.setrecursionlimit(req["recursion_limit"])
    random.seed(req.get("seed"))  # None: fresh entropy from the host for every run
    _install_tools(req.get("tools", []))
    if req.get("cwd"):
        import os

        os.chdir(req["cwd"])
    linecache.cache[FILENAME] = (len(code), None, code.splitlines(True), FILENAME)

    outcome: dict = {"value": None, "value_truncated": False, "error": None, "exit_code": None}
    try:
        tree = ast.parse(code, FILENAME, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        body = compile(tree, FILENAME, "exec", dont_inherit=True)
        tail = compile(last, FILENAME, "eval", dont_inherit=True) if last is not None else None
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        lineno = getattr(exc, "lineno", None)
        text = "".join(traceback.format_exception_only(type(exc), exc))
        outcome["error"] = _error(SYNTAX, exc, text, lineno)
        return outcome

    namespace = {"__name__": "__main__", "__builtins__": builtins, "__doc__": None}
    try:
        exec(body, namespace)
        if tail is not None:
            value = eval(tail, namespace)
            if value is not None:
                outcome["value"], outcome["value_truncated"] = _safe_repr(value, req["max_value_chars"])
    except SystemExit as exc:
        code_ = exc.code
        if code_ is None or code_ == 0:
            outcome["exit_code"] = 0
        else:
            outcome["exit_code"] = int(code_) if isinstance(code_, int) else 1
            text, lineno = _user_traceback(exc)
            outcome["error"] = _error(EXCEPTION, exc, text, lineno)
    except BaseException as exc:  # noqa: BLE001 - report everything the user's code raised
        text, lineno = _user_traceback(exc)
        outcome["error"] = _error(_classify(exc), exc, text, lineno)
    return outcome


class WitWorld(wit_world.WitWorld):
    def run(self, request: str) -> str:
        try:
            outcome = _execute(_loads(request))
        except BaseException as exc:  # noqa: BLE001 - the shim itself must never panic
            outcome = {"value": None, "value_truncated": False, "exit_code": None,
                       "error": _error(_classify(exc), exc, f"{type(exc).__name__}\n", None)}
        # The unflushed tail of the output travels back in the outcome itself.
        for key, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            try:
                outcome[key] = stream.take().encode("utf-8", "replace").decode() if isinstance(stream, _Capture) else ""
            except BaseException:  # noqa: BLE001
                outcome[key] = ""
        # Lone surrogates (e.g. in an exception message) cannot cross the WIT
        # string boundary; replace them rather than fail the whole outcome.
        try:
            text = _dumps(outcome, ensure_ascii=False)
        except BaseException:  # noqa: BLE001 - e.g. a hostile object in an error field
            text = _dumps(outcome, ensure_ascii=False, default=str)
        return text.encode("utf-8", "replace").decode("utf-8")
