"""The image-independent half of the guest runner, shared by every wasmrun guest image.

It turns one run request (a JSON document built by ``wasmrun.Sandbox``) into one
outcome (the JSON document ``wasmrun._result.GuestOutcome`` decodes): REPL-style
value of the last expression, tracebacks that point at the user's own lines,
error kinds, and the ``import tools`` stubs. What differs between images (how
output reaches the host, how a tool call travels, how the outcome is returned)
is the image's glue module: ``wasmrun_component.py`` for the default component image,
``python-wasm/scientific/wasmrun_scientific.py`` for the scientific image.

Nothing in this file is a security boundary: guest code runs in the same
interpreter and may tamper with any of it. The limits that matter are enforced
by the host.
"""

from __future__ import annotations

import ast
import builtins
import json
import linecache
import sys
import types
from collections.abc import Callable

import _random

# `inspect`, `traceback` and `random` are imported where they are needed: an
# image whose snapshot does not hold them (scientific) then pays for them only
# in runs that use them (~50 ms together in a fresh instance). The default
# image's snapshot holds the whole standard library, so there it costs nothing.

# Bound now, so that guest code replacing `json.dumps` cannot break the outcome.
_dumps = json.dumps
_loads = json.loads


def _request_decoder() -> Callable[[str], object]:
    """`json.loads` for the host's requests, calling the C scanner directly where there is one.

    `json.loads` runs three Python functions of the `json` package before the
    scanner; each call writes the reference counts of its function and code
    objects, pages of the interpreter's snapshot that a fresh instance must then
    copy. The host's request is compact JSON with nothing around the document.
    """
    scan = json.decoder.JSONDecoder().scan_once

    def decode(text: str) -> object:
        return scan(text, 0)[0]

    return decode


def _outcome_encoder() -> Callable[[object], str]:
    """``json.dumps(value, ensure_ascii=False)`` through one encoder made now (see `_request_decoder`)."""
    encoder = json.JSONEncoder(ensure_ascii=False)
    make = json.encoder.c_make_encoder
    if make is None:  # no C accelerator in this interpreter
        return encoder.encode
    c_encode = make(None, encoder.default, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)

    def encode(value: object) -> str:
        return "".join(c_encode(value, 0))

    return encode


_decode_request = _request_decoder()
_encode_outcome = _outcome_encoder()
# json.dumps builds a new encoder whenever it gets non-default options: build it once.
_ARGS_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False)

FILENAME = "<code>"
# A session's calls are named "<call 1>", "<call 2>", ...: a function defined by an earlier call then
# shows its own source lines in a later call's traceback (linecache keeps every call's code).
SESSION_FILENAME = "<call {}>"

# The globals of the session this instance serves (requests with "session_call" >= 1), or None.
# An instance serves either one-shot runs or one session, never both: the host keeps it that way.
_session_namespace: dict | None = None

# Error kinds; the host owns the vocabulary (wasmrun.ErrorKind).
SYNTAX, EXCEPTION, MEMORY, TOOL = "syntax", "exception", "memory", "tool"

# Source files of the runner itself: their frames are hidden from the user's tracebacks.
SHIM_FILES = {__file__}

ToolCaller = Callable[[str, str], str]
"""``call(name, arguments_json) -> result_json``; raises `ToolError` when the host refuses or fails."""


class ToolError(Exception):
    """A tool call was refused or failed on the host. Catch it like any exception."""


ToolError.__module__ = "tools"


class _HostDefault:
    """A default value that only the host can build; shown by its repr in help()."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


def socketless_event_loop(selector_events: types.ModuleType) -> None:
    """Let asyncio's event loops run without their self-pipe.

    ``asyncio.run`` builds a selector event loop, which opens a socketpair so
    that other threads and signal handlers can wake it. A guest has neither
    threads nor signals, and no sockets: the socketpair is refused and no event
    loop could be made at all. Without the pipe the loop works as usual; its
    waits go through ``select``/``poll``, whose sleeps end at the run's deadline.
    Applied to ``asyncio.selector_events`` by each image's glue (at build time
    when the snapshot holds asyncio, else right after it is imported).
    """
    loop = selector_events.BaseSelectorEventLoop

    def _make_self_pipe(self: object) -> None:
        self._ssock = self._csock = None  # type: ignore[attr-defined]

    loop._make_self_pipe = _make_self_pipe
    loop._close_self_pipe = lambda self: None


DEADLOCK = (
    "deadlock: waiting without a timeout for a lock, event, condition or queue that nothing can "
    "release (the sandbox runs a single thread); pass a timeout, or do not wait"
)


class SoloLock:
    """``threading.Lock`` for an interpreter that can never run a second thread.

    A held lock can only be released by the code that is now waiting for it, so
    an untimed wait is a certain deadlock. CPython-on-WASI aborts the whole
    interpreter there (a wasm trap: the run would end as a ``GuestCrash``), and
    the scientific image's CPython aborts on a *timed* wait too. This lock raises
    ``RuntimeError`` for the certain deadlock, and a timed wait sleeps for its
    timeout (bounded by the run's deadline like any sleep) and fails, as it would
    if another thread held the lock throughout.
    """

    __slots__ = ("_locked",)

    def __init__(self) -> None:
        self._locked = False

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not blocking and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        if timeout < 0 and timeout != -1:
            raise ValueError("timeout value must be a non-negative number")
        if not self._locked:
            self._locked = True
            return True
        if not blocking:
            return False
        if timeout == -1:
            raise RuntimeError(DEADLOCK)
        import time

        time.sleep(timeout)
        return False

    __enter__ = acquire
    acquire_lock = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if not self._locked:
            raise RuntimeError("release unlocked lock")
        self._locked = False

    release_lock = release

    def locked(self) -> bool:
        return self._locked

    def _at_fork_reinit(self) -> None:
        self._locked = False

    def __repr__(self) -> str:
        return f"<{'locked' if self._locked else 'unlocked'} {type(self).__name__} object at {id(self):#x}>"


def solo_threading(module: types.ModuleType) -> None:
    """Make `threading`'s locks (and with them Event, Condition, Semaphore, Barrier, queue.Queue) `SoloLock`s.

    Applied to ``threading`` by each image's glue (at build time when the snapshot
    holds it, else right after it is imported). ``_thread.allocate_lock`` itself is
    left alone: the import system's own locks use it.
    """
    module.Lock = module._allocate_lock = SoloLock  # type: ignore[attr-defined]


def solo_queue(module: types.ModuleType) -> None:
    """``queue.SimpleQueue`` is a C type that blocks in C: use the pure-Python one (built on `SoloLock`s)."""
    fallback = getattr(module, "_PySimpleQueue", None)
    if fallback is not None:
        module.SimpleQueue = fallback  # type: ignore[attr-defined]


# A tool call is on the path of guest loops that make thousands of them: its arguments are
# encoded and its result decoded with json's C accelerators directly. `json.dumps`/`loads` wrap
# those in several Python calls each (~20,000 wasm instructions, more than the host call itself).
_ENCODER_MARKERS: dict = {}  # one reusable "seen" set for circular references, cleared after a failure
if json.encoder.c_make_encoder is not None:
    _encode_args = json.encoder.c_make_encoder(
        _ENCODER_MARKERS, _ARGS_ENCODER.default, json.encoder.encode_basestring_ascii, None,
        _ARGS_ENCODER.key_separator, _ARGS_ENCODER.item_separator, False, False, False,
    )  # fmt: skip

    def _encode(arguments: dict) -> str:
        try:
            return "".join(_encode_args(arguments, 0))
        except BaseException:
            _ENCODER_MARKERS.clear()  # a failed encode leaves its open containers marked
            raise

else:  # pragma: no cover - an interpreter without the _json accelerator
    _encode = _ARGS_ENCODER.encode

_scan_once = json.decoder.JSONDecoder().scan_once


def _decode(text: str) -> object:
    """A tool's result JSON (the host's compact JSON: one value, no surrounding space)."""
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return _loads(text)  # not JSON: let `json.loads` say where
    return value if end == len(text) else _loads(text)


def _make_tool(spec: dict, call: ToolCaller) -> types.FunctionType:
    import inspect

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
    positional = tuple(p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)
    known = frozenset(p.name for p in params)
    required = tuple(p.name for p in params if p.default is inspect.Parameter.empty)

    def bind(args: tuple, kwargs: dict) -> dict:
        # A lean `signature.bind`. Defaults are applied by the host, which validates every call anyway.
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
        return arguments

    empty = None if required else _encode({})

    def tool(*args: object, **kwargs: object) -> object:
        if empty is not None and not args and not kwargs:  # e.g. `tools.refresh()`: nothing to bind
            return _decode(call(name, empty))
        arguments = bind(args, kwargs)
        try:
            payload = _encode(arguments)
        except (TypeError, ValueError) as exc:
            raise ToolError(f"{name}: arguments are not JSON-serialisable: {exc}") from None
        return _decode(call(name, payload))

    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = spec.get("doc") or None
    tool.__signature__ = signature  # type: ignore[attr-defined]
    tool.__module__ = "tools"
    return tool  # type: ignore[return-value]


# The `tools` module of a run without tools. Made once (at build time, for an image whose snapshot ran
# the shim): a run without tools then leaves `sys.modules` and the snapshot's pages as they are.
_no_tools: types.ModuleType | None = None


def install_tools(specs: list[dict], call: ToolCaller) -> None:
    """Make ``import tools`` give this run's tools, each calling the host through `call`."""
    global _no_tools
    if not specs:
        if _no_tools is None:
            _no_tools = types.ModuleType("tools", "Host functions registered for this run.")
            _no_tools.ToolError = ToolError  # type: ignore[attr-defined]
            _no_tools.__all__ = []  # type: ignore[attr-defined]
        if sys.modules.get("tools") is not _no_tools:
            sys.modules["tools"] = _no_tools
        return
    module = types.ModuleType("tools", "Host functions registered for this run.")
    module.ToolError = ToolError  # type: ignore[attr-defined]
    names = []
    for spec in specs:
        setattr(module, spec["name"], _make_tool(spec, call))
        names.append(spec["name"])
    module.__all__ = names  # type: ignore[attr-defined]
    sys.modules["tools"] = module


def safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not hide the real error
        return f"<{type(exc).__name__} with an unprintable message>"


def error(kind: str, exc: BaseException, tb_text: str, lineno: int | None) -> dict:
    return {
        "kind": kind,
        "type": type(exc).__name__,
        "message": safe_str(exc),
        "traceback": tb_text,
        "lineno": lineno,
    }


def _is_user(filename: str) -> bool:
    return filename == FILENAME or filename.startswith("<call ")


def _user_traceback(exc: BaseException, filename: str = FILENAME) -> tuple[str, int | None]:
    """Format `exc` from the first frame of the user's code down; drop the shim's frames.

    `lineno` is the last line reached in `filename` (the code of this run or call).
    """
    import traceback

    tb = exc.__traceback__
    while tb is not None and not _is_user(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    lineno = None
    walk = tb
    while walk is not None:
        if walk.tb_frame.f_code.co_filename == filename:
            lineno = walk.tb_lineno
        walk = walk.tb_next
    try:
        report = traceback.TracebackException(type(exc), exc, tb, compact=True)
        _strip_shim_frames(report, set())
        text = "".join(report.format())
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not kill the shim
        text = f"{type(exc).__name__}: <unprintable>\n"
    return text, lineno


def _strip_shim_frames(report: object, seen: set[int]) -> None:
    """The `tools` stubs live in the shim: show the user's call, not the plumbing."""
    import traceback

    if report is None or id(report) in seen:
        return
    seen.add(id(report))
    report.stack = traceback.StackSummary.from_list([f for f in report.stack if f.filename not in SHIM_FILES])
    _strip_shim_frames(report.__cause__, seen)
    _strip_shim_frames(report.__context__, seen)
    for inner in getattr(report, "exceptions", None) or ():
        _strip_shim_frames(inner, seen)


def classify(exc: BaseException) -> str:
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


class _SortedScandir:
    """What `os.scandir` returns (an iterator and context manager), over entries sorted by name."""

    def __init__(self, entries: list) -> None:
        self._entries = iter(entries)

    def __iter__(self) -> "_SortedScandir":
        return self

    def __next__(self) -> object:
        return next(self._entries)

    def __enter__(self) -> "_SortedScandir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._entries = iter(())


def sort_listings() -> None:
    """Deterministic runs: `os.listdir` and `os.scandir` (so `os.walk`, `glob`, `pathlib`) in name order.

    Not a security measure (the guest may undo it); it only makes the order of
    a listing independent of the filesystem it came from. Idempotent.
    """
    import os

    if getattr(os.scandir, "_wasmrun_sorted", False):
        return
    listdir, scandir = os.listdir, os.scandir

    def sorted_listdir(path: object = None) -> list:
        return sorted(listdir(path))

    def sorted_scandir(path: object = None) -> _SortedScandir:
        with scandir(path) as entries:
            return _SortedScandir(sorted(entries, key=lambda entry: entry.name))

    for patched, real in ((sorted_listdir, listdir), (sorted_scandir, scandir)):
        patched.__name__, patched.__qualname__, patched.__doc__ = real.__name__, real.__name__, real.__doc__
        patched._wasmrun_sorted = True  # type: ignore[attr-defined]
    os.listdir, os.scandir = sorted_listdir, sorted_scandir


def execute(req: dict, call: ToolCaller) -> dict:
    """Run the request's code (the glue has already set up ``sys.stdout``/``sys.stderr``)."""
    global _session_namespace
    code: str = req["code"]
    sys.setrecursionlimit(req["recursion_limit"])
    session_call = req.get("session_call") or 0
    seed = req.get("seed")
    # A session seeds `random` once, at its first call; later calls continue its sequence.
    if session_call <= 1 and (seed is not None or "random" in sys.modules):
        import random

        # Without a seed: the host's entropy for this run (None, from an older host: read it over WASI).
        value = seed if seed is not None else req.get("entropy")
        generator = random._inst
        if type(value) is int and type(generator) is random.Random:
            # What `Random.seed` does for an int, without running its Python code (see `_request_decoder`).
            _random.Random.seed(generator, value)
            if generator.gauss_next is not None:
                generator.gauss_next = None
        else:
            random.seed(value)
    # (A `random` imported later by the code seeds itself from the host's entropy.)
    if req.get("deterministic"):
        sort_listings()
    install_tools(req.get("tools", []), call)
    if req.get("cwd"):
        import os

        # getcwd() is libc's own record; chdir() asks the host (two calls that a session's every turn
        # would pay), so only when the code of an earlier call moved away.
        if os.getcwd() != req["cwd"]:
            os.chdir(req["cwd"])
    filename = SESSION_FILENAME.format(session_call) if session_call else FILENAME
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)

    outcome: dict = {"value": None, "value_truncated": False, "error": None, "exit_code": None}
    try:
        body, tail = _compile(code, filename)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        import traceback

        lineno = getattr(exc, "lineno", None)
        text = "".join(traceback.format_exception_only(type(exc), exc))
        outcome["error"] = error(SYNTAX, exc, text, lineno)
        return outcome

    if not session_call:
        namespace = {"__name__": "__main__", "__builtins__": builtins, "__doc__": None}
    else:
        if _session_namespace is None:
            _session_namespace = {"__name__": "__main__", "__builtins__": builtins, "__doc__": None}
        namespace = _session_namespace
    try:
        if body is not None:
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
            text, lineno = _user_traceback(exc, filename)
            outcome["error"] = error(EXCEPTION, exc, text, lineno)
    except BaseException as exc:  # noqa: BLE001 - report everything the user's code raised
        text, lineno = _user_traceback(exc, filename)
        outcome["error"] = error(classify(exc), exc, text, lineno)
    return outcome


def _compile(code: str, filename: str) -> tuple[types.CodeType | None, types.CodeType | None]:
    """The code's statements, and its last statement when that is an expression (its value is the run's).

    Code that is one expression (a call, a calculation) compiles in "eval" mode
    at once; anything else goes through its syntax tree to split the last
    expression off. Both give the same value and the same errors.
    """
    if "\n" not in code.strip():
        try:
            return None, compile(code, filename, "eval", dont_inherit=True)
        except SyntaxError:
            pass  # not an expression (or not valid at all: the tree below says which, as usual)
    tree = compile(code, filename, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, filename, "exec", dont_inherit=True)
    tail = compile(last, filename, "eval", dont_inherit=True) if last is not None else None
    return body, tail


def run_request(request: str, call: ToolCaller, prepare: Callable[[dict], None] | None = None) -> dict:
    """`execute` on a JSON request; never raises (a failure of the shim itself becomes the outcome's error).

    `prepare`, if given, sees the decoded request first (image-specific set-up).
    """
    try:
        req = _decode_request(request)
        if prepare is not None:
            prepare(req)
        return execute(req, call)
    except BaseException as exc:  # noqa: BLE001 - the shim itself must never panic
        return {"value": None, "value_truncated": False, "exit_code": None,
                "error": error(classify(exc), exc, f"{type(exc).__name__}\n", None)}


def encode_outcome(outcome: dict) -> str:
    """The outcome as JSON text that is valid UTF-8 (lone surrogates are replaced)."""
    try:
        text = _encode_outcome(outcome)
    except BaseException:  # noqa: BLE001 - e.g. a hostile object in an error field
        text = _dumps(outcome, ensure_ascii=False, default=str)
    return text.encode("utf-8", "replace").decode("utf-8")
