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
