"""The default image's glue at run time: output through `host.output`, tools through `host.call`, `run`.

The image-independent part of the guest runner is `wasmrun_core`; this module
is what is specific to the componentize-py component: `sys.stdout`/`sys.stderr`
that send complete lines to the host, tool calls through the WIT import, and
the `run` export. `app` (the build-time half: standard library preload, snapshot
preparation) imports it after it has taken the free memory the standard library
left behind, so the objects defined here sit together at the top of the heap: a
run touches few pages of them.

Nothing in this file is a security boundary (see `app`).
"""

from __future__ import annotations

import io
import random as _random
import sys

import wasmrun_core as _core
import wit_world
from componentize_py_types import Err
from wit_world.imports import host as _host

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
STDOUT = _Capture(1)
STDERR = _Capture(2)


# The real one: `app` hands componentize-py a stand-in until the first run (see the end of `app`).
_RANDOM_SEED = _random.seed


class WitWorld(wit_world.WitWorld):
    def run(self, request: str) -> str:
        if _random.seed is not _RANDOM_SEED:  # the first run of an instance (see the end of `app`)
            _random.seed = _RANDOM_SEED
        if sys.stdout is not STDOUT or sys.stderr is not STDERR:  # put back by the snapshot; code may move them
            sys.stdout, sys.stderr = STDOUT, STDERR
        for stream in (STDOUT, STDERR):  # a session's earlier call may have left text behind
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


