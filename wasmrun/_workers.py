"""Worker processes that run guests in parallel, each with its own wasmtime runtime.

Why processes: a fresh run maps a new guest instance and then writes a few
hundred pages of the interpreter snapshot, each a copy-on-write page fault.
In one process every such fault must flush the TLB of every other core that
runs the same address space (an inter-processor interrupt), so short runs on
two threads of one process measured 1.0-1.2x the throughput of one thread,
while two processes gave 1.97x (``benchmarks/README.md``, "Levers"). Cutting the
faults per run (``python-wasm/guest/app.py``) helps everything but cannot make
them vanish: every run must start from the pristine snapshot.

What runs where:

* the worker process: the guest, its limits (fuel, memory, deadline, output
  caps), its files and artifacts, all through an ordinary in-process `Sandbox`;
* the caller's process: everything the guest reaches through a tool. A tool
  call travels back over the worker's pipe and goes through the caller's own
  `ToolRegistry.dispatch` (validation, policy, approval, budgets, handler,
  audit) under a `RunState` with the same deadline, so handlers, credentials and
  audit records never leave the caller's process and a `Result`'s
  ``tool_calls`` are the caller's records.

Workers are plain ``python -m wasmrun._worker_main`` subprocesses (as the eval
harness's processes backend): nothing is forked from a process that runs
wasmtime threads, and the caller's ``__main__`` is never re-imported. They are
shared by every `Sandbox` of the process, started on demand in the background
(a run never waits for a worker to start), and stop when their pipe closes.
"""

from __future__ import annotations

import dataclasses
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

import msgspec

from ._limits import Limits
from ._result import Result, failed_run
from ._runstate import RunState, Trap, enter_run, leave_run
from .tools import RunContext, ToolRegistry

#: How long a worker may take to start (import wasmrun); it is not waited for by any run.
START_TIMEOUT_S: Final = 120.0
#: A worker enforces its run's deadline itself; the caller kills it only this much later.
KILL_GRACE_S: Final = 10.0

_HEADER = struct.Struct(">I")
_CANCEL_POLL_S = 0.005  # how soon a cancelled run's worker is stopped (one epoch tick)


class Job(msgspec.Struct, frozen=True, tag="job"):
    """One run for a worker: what `Sandbox.run` got, plus the sandbox's configuration."""

    image: str
    code: str
    limits: dict[str, Any]
    files: dict[str, bytes] | None
    seed: int | None
    tools: list[dict[str, Any]] | None  # the registry's guest specs; None: no registry
    deterministic: bool = False


class ToolRequest(msgspec.Struct, frozen=True, tag="tool"):
    """Worker to caller: the guest called a tool."""

    name: str
    args: str


class ToolReply(msgspec.Struct, frozen=True, tag="reply"):
    """Caller to worker: the tool's outcome, or the trap that stops the guest (``trap``)."""

    ok: bool
    payload: str
    trap: str | None = None
    timed_out: bool = False


class Ready(msgspec.Struct, frozen=True, tag="ready"):
    """Worker to caller, once, after start-up (of any `WorkerProcess`)."""


class Done(msgspec.Struct, frozen=True, tag="done"):
    """Worker to caller: the run's result (its ``tool_calls`` are the caller's to fill in)."""

    result: Result


class Failed(msgspec.Struct, frozen=True, tag="failed"):
    """Worker to caller: the worker itself failed on a job (a bug, never the guest's doing)."""

    message: str


ToWorker = Job | ToolReply
FromWorker = Ready | ToolRequest | Done | Failed


class WorkerDied(Exception):
    """The worker process exited or broke the protocol."""


class Cancelled(Exception):
    """The caller cancelled the run (`AsyncSandbox`); the worker is killed to stop its guest at once."""


class Channel:
    """Length-prefixed msgpack messages over a pair of pipe file descriptors."""

    def __init__(self, read_fd: int, write_fd: int, incoming: Any) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(incoming)

    @classmethod
    def of_this_process(cls, incoming: Any) -> Channel:
        """A worker process's end: requests on stdin, replies on the real stdout.

        Anything else that prints (the worker's own code, libraries) goes to stderr
        instead, so it cannot corrupt the protocol.
        """
        out_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return cls(0, out_fd, incoming)

    def send(self, message: Any) -> None:
        data = self._encoder.encode(message)
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            written = os.write(self._write_fd, view)
            view = view[written:]

    def readable(self, timeout_s: float) -> bool:
        """Whether a message has (started to) arrive within `timeout_s`; reads nothing."""
        return bool(select.select([self._read_fd], [], [], max(0.0, timeout_s))[0])

    def receive(self, timeout_s: float | None = None) -> Any:
        """The next message; `TimeoutError` if none arrives within `timeout_s`; `WorkerDied` at end of input."""
        size = _HEADER.unpack(self._read_exactly(_HEADER.size, timeout_s))[0]
        try:
            return self._decoder.decode(self._read_exactly(size, timeout_s))
        except msgspec.DecodeError as exc:
            raise WorkerDied(f"malformed message: {exc}") from None

    def _read_exactly(self, size: int, timeout_s: float | None) -> bytes:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        chunks: list[bytes] = []
        while size:
            if deadline is not None:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([self._read_fd], [], [], max(0.0, left))
                if not ready:
                    raise TimeoutError
            chunk = os.read(self._read_fd, min(size, 1 << 20))
            if not chunk:
                raise WorkerDied("end of input")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def _worker_env() -> dict[str, str]:
    """The caller's environment, with this very ``wasmrun`` first on the import path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class WorkerProcess:
    """A ``python -m <module>`` child process of this ``wasmrun``, spoken to over a `Channel` on its stdin/stdout.

    Its stderr is kept (in a temporary file) for `describe_exit`. Used by the
    workers of `Sandbox(executor=...)` (`Worker`) and by the eval harness's
    processes backend; each defines its own messages.
    """

    def __init__(self, module: str, incoming: Any) -> None:
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_worker_env(),
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.channel = Channel(self.proc.stdout.fileno(), self.proc.stdin.fileno(), incoming)

    def wait_ready(self) -> None:
        """Wait for the child's `Ready`; `WorkerDied`, or `TimeoutError` after `START_TIMEOUT_S`."""
        if not isinstance(self.channel.receive(START_TIMEOUT_S), Ready):
            raise WorkerDied("unexpected start-up message")

    def describe_exit(self, wait_s: float = 0.0) -> str:
        """The child's exit status (waiting up to `wait_s` for it) and the tail of its stderr."""
        try:
            status = self.proc.wait(timeout=wait_s) if wait_s else self.proc.poll()
        except subprocess.TimeoutExpired:
            status = None
        try:
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            tail = ""
        return f"exit status {status}" + (f": {tail}" if tail else "")

    def close(self, *, kill: bool = False) -> None:
        """Stop the child: end of input (it exits by itself), or at once."""
        try:
            if kill:
                self.proc.kill()
            elif self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass


class Worker(WorkerProcess):
    """One ``python -m wasmrun._worker_main`` process, serving one job at a time."""

    def __init__(self) -> None:
        super().__init__("wasmrun._worker_main", FromWorker)

    def run(
        self, job: Job, state: RunState, dispatch: Callable[[str, str], tuple[bool, str]], wait_s: float,
        cancel: threading.Event | None = None,
    ) -> Result:  # fmt: skip
        """Run `job`, answering its tool calls with `dispatch`; `TimeoutError` after `wait_s` seconds.

        `Cancelled` soon after `cancel` is set (checked every `_CANCEL_POLL_S` while waiting).
        """
        deadline = time.monotonic() + wait_s
        self.channel.send(job)
        while True:
            if cancel is not None:
                while not self.channel.readable(min(_CANCEL_POLL_S, max(0.0, deadline - time.monotonic()))):
                    if cancel.is_set():
                        raise Cancelled
                    if time.monotonic() >= deadline:
                        raise TimeoutError
            message = self.channel.receive(max(0.0, deadline - time.monotonic()))
            if isinstance(message, ToolRequest):
                try:
                    ok, payload = dispatch(message.name, message.args)
                    reply = ToolReply(ok=ok, payload=payload)
                except Trap as trap:
                    reply = ToolReply(ok=False, payload="", trap=str(trap), timed_out=state.timed_out)
                self.channel.send(reply)
            elif isinstance(message, Done):
                return message.result
            elif isinstance(message, Failed):
                raise WorkerDied(message.message)
            else:
                raise WorkerDied(f"unexpected message {type(message).__name__}")


class WorkerPool:
    """Up to `size` worker processes shared by every `Sandbox` of this process.

    `take` never waits for a worker to start: when none is idle it starts one in
    the background (if below `size`) and returns None, and the caller runs the
    guest itself meanwhile. `take_waiting` waits for one (``executor="processes"``).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[Worker] = []
        self._starting = 0
        self._live = 0
        self._changed = threading.Condition()
        self._closed = False
        self.start_error: str | None = None

    def take(self) -> Worker | None:
        with self._changed:
            if self._idle:
                return self._idle.pop()
            self._start_if_room()
        return None

    def take_waiting(self, timeout_s: float) -> Worker | None:
        """An idle worker, waiting up to `timeout_s` for one to start or come back; None if none did."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            self.start_error = None
            while not self._idle:
                if self.start_error is not None and self._live + self._starting == 0:
                    return None  # a worker failed to start, and no other will come back
                self._start_if_room()
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    return None
                self._changed.wait(left)
            return self._idle.pop()

    def _start_if_room(self) -> None:
        if not self._closed and self._live + self._starting < self.size:
            self._starting += 1
            threading.Thread(target=self._start_one, name="wasmrun-worker-start", daemon=True).start()

    def _start_one(self) -> None:
        worker: Worker | None = None
        try:
            worker = Worker()
            worker.wait_ready()
        except (OSError, WorkerDied, TimeoutError) as exc:
            if worker is not None:
                self.start_error = f"{exc} ({worker.describe_exit()})"
                worker.close(kill=True)
            else:
                self.start_error = str(exc)
            worker = None
        with self._changed:
            self._starting -= 1
            self._changed.notify_all()
            if worker is None:
                return
            if not self._closed:
                self._live += 1
                self._idle.append(worker)
                return
        worker.close()

    def give_back(self, worker: Worker, *, broken: bool = False) -> None:
        with self._changed:
            self._changed.notify_all()
            if not broken and not self._closed:
                self._idle.append(worker)
                return
            self._live -= 1
        worker.close(kill=broken)

    def stop(self, timeout: float) -> None:
        """Stop the idle workers; busy ones stop when their run is handed back."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._live -= len(idle)
            self._changed.notify_all()
        for worker in idle:
            worker.close()


class InlineRuns:
    """How many guests this process runs on its own threads right now (``executor="auto"``)."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def claim_if_idle(self) -> bool:
        """Claim the process for one run if no other in-process run is going on."""
        with self._lock:
            if self._count:
                return False
            self._count += 1
            return True

    def claim(self) -> None:
        with self._lock:
            self._count += 1

    def release(self) -> None:
        with self._lock:
            self._count -= 1


inline_runs = InlineRuns()


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def shared_pool() -> WorkerPool:
    """The process-wide worker pool: as many workers as cores (they are CPU-bound)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            from . import _shutdown

            _pool = WorkerPool(max(1, os.cpu_count() or 1))
            _shutdown.register(_pool)
        return _pool


def execute(
    pool: WorkerPool,
    worker: Worker,
    *,
    image: str,
    seed: int | None,
    tools: ToolRegistry | None,
    code: str,
    limits: Limits,
    inputs: dict[str, bytes] | None,
    started: float,
    deterministic: bool = False,
    cancel: threading.Event | None = None,
) -> Result:
    """Run `code` in `worker` (then hand it back to `pool`); its tool calls come back to `tools`, here.

    Setting `cancel` kills the worker (a new one starts on demand): the guest stops at once.
    """
    job = Job(image=image, code=code, limits=dataclasses.asdict(limits), files=inputs, seed=seed,
              tools=tools.guest_specs() if tools is not None else None, deterministic=deterministic)  # fmt: skip
    # The caller's side of the run: the deadline its tool calls are held to, their records and budgets.
    state = RunState(deadline_ns=time.monotonic_ns() + int(limits.timeout_s * 1e9), max_output_bytes=0)
    if cancel is not None:
        state.cancel = cancel  # a tool call waiting in this process notices it too
    context = RunContext(code=code)

    def answer(name: str, args: str) -> tuple[bool, str]:
        # The guest's own RunState (in the worker) counted the call and checked its deadline.
        if tools is None:
            return False, f"no tool named {name!r}: this sandbox has no tools registered"
        state.check_deadline()
        return tools.dispatch(context, state, name, args)

    usable = False
    enter_run(state)  # a tool handler on this thread must see a run in progress (re-entrant runs are refused)
    try:
        result = worker.run(job, state, answer, limits.timeout_s + KILL_GRACE_S, cancel)
        usable = True
    except Cancelled:
        result = failed_run(code, "cancelled", "Cancelled", "the run was cancelled by its caller", started)
    except TimeoutError:
        message = f"the run exceeded its {limits.timeout_s:g}s deadline (Limits.timeout_s); its worker was stopped"
        result = failed_run(code, "timeout", "TimeoutError", message, started)
    except (WorkerDied, OSError) as exc:
        message = f"the worker process running this guest failed: {exc} ({worker.describe_exit()})"
        result = failed_run(code, "internal", "WorkerError", message, started)
    finally:
        leave_run()
        pool.give_back(worker, broken=not usable)
    return msgspec.structs.replace(result, tool_calls=tuple(context.records))

