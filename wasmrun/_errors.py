"""wasmrun's exception tree. Errors *in guest code* never raise: they come back in `Result.error`.

Exceptions here are for the host's own mistakes and failures: a broken
installation, a sandbox used after `close()`, a tool calling back into its own run.
"""

from __future__ import annotations


class WasmrunError(Exception):
    """Base class of every exception wasmrun raises on the host."""


class ImageError(WasmrunError, RuntimeError):
    """The guest image could not be built, cached or loaded."""


class SandboxClosedError(WasmrunError, RuntimeError):
    """The sandbox was used after `close()`."""


class ReentrancyError(WasmrunError, RuntimeError):
    """A run was started from inside a tool handler of a run on the same thread."""


class SessionDeadError(WasmrunError, RuntimeError):
    """A `Session` can take no more calls; `reason` says why (closed, expired, out of memory, crashed...).

    A session dies rather than risk a wrong answer: after its guest ran out of
    memory or its interpreter crashed, when it used up its total fuel or
    lifetime, after its idle timeout, or when it (or its sandbox) was closed.
    Start a new session, or restore an earlier ``Session.snapshot()``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"this session is dead: {reason}")
        self.reason = reason


class SnapshotError(WasmrunError, ValueError):
    """`Sandbox.restore` was given data it cannot restore (another wasmrun or image version, or corrupt data)."""
