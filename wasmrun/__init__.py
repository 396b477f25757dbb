"""wasmrun: run untrusted, LLM-generated Python in CPython-on-WASI, inside your process.

>>> import wasmrun
>>> wasmrun.run("print(6 * 7)").stdout
'42\\n'
"""

from ._async import AsyncSandbox, AsyncSession
from ._errors import (
    ImageError,
    ReentrancyError,
    SandboxClosedError,
    SessionDeadError,
    SnapshotError,
    WasmrunError,
)
from ._limits import Limits
from ._result import ErrorKind, Result, RunError, RunStats
from ._sandbox import Sandbox, run
from ._session import Session
from ._version import __version__
from .eval import evaluate
from .tools import AuditLog, RunContext, Tool, ToolCall, ToolCallRecord, ToolError, ToolRegistry

__all__ = [
    "AsyncSandbox",
    "AsyncSession",
    "AuditLog",
    "ErrorKind",
    "ImageError",
    "Limits",
    "ReentrancyError",
    "Result",
    "RunError",
    "RunStats",
    "Sandbox",
    "RunContext",
    "SandboxClosedError",
    "Session",
    "SessionDeadError",
    "SnapshotError",
    "Tool",
    "ToolCall",
    "ToolCallRecord",
    "ToolError",
    "ToolRegistry",
    "WasmrunError",
    "__version__",
    "evaluate",
    "run",
]
