"""`AsyncSandbox`: `Sandbox` for asyncio and trio programs (through anyio).

A run is CPU work in wasmtime (which releases the GIL) or a wait in a host
function; either way it must not happen on the event loop's thread. Each run
goes to a worker thread (`anyio.to_thread.run_sync`) under the sandbox's own
`anyio.CapacityLimiter`, so at most ``max_concurrency`` runs execute at once
and the rest wait their turn without a thread. A run's deadline starts when it
starts executing, not while it waits for the limiter, so queued runs do not
time out because others are busy.

**Cancellation.** Cancelling the task that awaits `AsyncSandbox.run` (a
timeout scope, a task group that fails, Ctrl-C in `asyncio.run`) stops the
guest: the run's cancel flag is set, the epoch-deadline callback (`wasmrun._deadline`)
traps the guest at its next check (at most 8 ticks, 40 ms) or it wakes from a host wait (sleep,
poll), and the store is handed back to be closed. `run` then waits for the
worker thread to finish (shielded, so promptly) before re-raising the
cancellation: when the cancelled `await` has unwound, nothing of the run is
still executing. A guest waiting for a tool stops too; the tool's handler
keeps running on its worker thread until it returns (Python threads cannot be
killed), and its result is dropped.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Self, TypeVar

import anyio
import anyio.to_thread
from typing_extensions import Unpack

from ._errors import SandboxClosedError
from ._limits import Limits
from ._result import Result
from ._sandbox import Sandbox, SandboxOptions, SessionOptions, check_options
from ._session import Session

T = TypeVar("T")


def _default_concurrency() -> int:
    # One run per usable core. Fresh runs fault in copy-on-write pages, and every such fault flushes
    # the TLB of each core running the process: more threads than cores made 200 `print(1)` runs
    # 1.7x slower (4 vs 2 threads on 2 cores, benchmarks/test_bench_async.py). Runs that mostly wait
    # in tools can use more: pass `max_concurrency`.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(32, cores))


async def call_cancellable(
    work: Callable[[threading.Event], T], limiter: anyio.CapacityLimiter, cancel: threading.Event | None = None
) -> T:
    """Run ``work(cancel)`` on a worker thread; if the awaiting task is cancelled, set `cancel` and wait.

    `work` must return promptly once `cancel` is set (a run does, within one
    epoch tick). The cancellation is re-raised after `work` has returned, so a
    cancelled caller never leaves a run executing behind its back.
    """
    flag = cancel if cancel is not None else threading.Event()
    box: list[T] = []
    failure: list[BaseException] = []

    async def worker() -> None:
        # Shielded: the thread is waited for even when the caller is cancelled.
        with anyio.CancelScope(shield=True):
            try:
                box.append(await anyio.to_thread.run_sync(work, flag, limiter=limiter))
            except Exception as exc:  # noqa: BLE001 - re-raised as is below, not wrapped in an ExceptionGroup
                failure.append(exc)
        group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(worker)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            # Our own scope (the worker finished) or the caller's: setting the flag is harmless
            # after the run ended, and stops it promptly otherwise.
            flag.set()
            raise
    # Only reached when the worker finished: a caller's cancellation propagates out of the group.
    if failure:
        raise failure[0]
    return box[0]


class _AsyncRunner:
    """What `AsyncSandbox` and `AsyncSession` share: ``async with``, and `run` on the sandbox's worker threads."""

    _limiter: anyio.CapacityLimiter

    async def _started(self) -> Sandbox | Session:
        """The synchronous sandbox or session behind this one, made (on a worker thread) on first use."""
        raise NotImplementedError

    def _check_open(self) -> None:
        """Raise `SandboxClosedError` if this one refuses runs."""

    async def aclose(self) -> None:
        """Release what the synchronous sandbox or session holds."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self._started()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def run(
        self,
        code: str,
        *,
        limits: Limits | None = None,
        files: Mapping[str, bytes | str] | None = None,
    ) -> Result:
        """`Sandbox.run` (`Session.run`) on a worker thread; cancelling the awaiting task stops the guest promptly."""
        self._check_open()
        runner = await self._started()
        return await call_cancellable(lambda cancel: runner._run(code, limits, files, cancel), self._limiter)


class AsyncSandbox(_AsyncRunner):
    """`Sandbox` with ``async`` methods, for asyncio and trio (via anyio).

    >>> async def main() -> str | None:
    ...     async with AsyncSandbox(limits=Limits(timeout_s=2)) as sandbox:
    ...         result = await sandbox.run("6 * 7")
    ...     return result.value
    >>> anyio.run(main)
    '42'

    The arguments are `Sandbox`'s, plus ``max_concurrency``: how many runs
    execute at once on worker threads (default: the number of usable CPU
    cores, at most 32; raise it for runs that mostly wait on tools); further
    runs wait for a slot without occupying a thread. Runs never
    block the event loop, and cancelling the task awaiting `run` stops the
    guest within a few epoch ticks and frees its store (see the module notes).

    The underlying `Sandbox` (and, on first use in a process, its image) is
    loaded on a worker thread when the sandbox is entered or first used; its
    arguments are checked in the constructor (`wasmrun._sandbox.check_options`).
    """

    def __init__(self, *, max_concurrency: int | None = None, **options: Unpack[SandboxOptions]) -> None:
        check_options(options)
        bad = isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
        if max_concurrency is not None and (bad or max_concurrency > 1024):
            raise ValueError(f"max_concurrency must be an int between 1 and 1024, got {max_concurrency!r}")
        self._make = functools.partial(Sandbox, **options)
        self._limiter = anyio.CapacityLimiter(max_concurrency or _default_concurrency())
        self._sandbox: Sandbox | None = None
        self._closed = False
        self._lock: anyio.Lock | None = None

    @property
    def sandbox(self) -> Sandbox:
        """The synchronous `Sandbox` behind this one (available once entered or used)."""
        if self._sandbox is None:
            raise RuntimeError("the AsyncSandbox has not started yet: use `async with` or await a run first")
        return self._sandbox

    async def _started(self) -> Sandbox:
        if self._sandbox is not None:
            return self._sandbox
        if self._lock is None:
            self._lock = anyio.Lock()  # created in the event loop that uses it (asyncio or trio)
        async with self._lock:
            if self._sandbox is None:
                self._sandbox = await anyio.to_thread.run_sync(self._make)
                if self._closed:
                    self._sandbox.close()
            return self._sandbox

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosedError("this AsyncSandbox is closed; create a new one")

    def session(self, **options: Unpack[SessionOptions]) -> AsyncSession:
        """An `AsyncSession`: `Sandbox.session` with ``async`` methods (arguments as there).

        >>> async with AsyncSandbox() as sb, sb.session() as s:
        ...     await s.run("x = 41")
        ...     (await s.run("x + 1")).value
        '42'
        """
        self._check_open()
        return AsyncSession(self, options)

    async def aclose(self) -> None:
        """Refuse further runs, close its sessions and release pre-warmed instances. Runs in progress finish."""
        self._closed = True
        if self._sandbox is not None:
            self._sandbox.close()


class AsyncSession(_AsyncRunner):
    """`Session` with ``async`` methods, from `AsyncSandbox.session()`; usable with ``async with``.

    Calls run on the sandbox's worker threads under its ``max_concurrency``.
    Cancelling the task awaiting `run` stops the guest within a few epoch ticks;
    the session then continues from its state after the last completed call,
    as after a timeout (see `Session`). The session itself (no guest yet) is
    made on first use.
    """

    def __init__(self, sandbox: AsyncSandbox, options: SessionOptions) -> None:
        self._owner = sandbox
        self._limiter = sandbox._limiter
        self._options = options
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """The synchronous `Session` behind this one (available once entered or used)."""
        if self._session is None:
            raise RuntimeError("the AsyncSession has not started yet: use `async with` or await a run first")
        return self._session

    async def _started(self) -> Session:
        if self._session is None:
            sandbox = await self._owner._started()
            self._session = sandbox.session(**self._options)
        return self._session

    async def fork(self) -> AsyncSession:
        """`Session.fork`, on a worker thread."""
        session = await self._started()
        child = AsyncSession(self._owner, self._options)
        child._session = await anyio.to_thread.run_sync(session.fork, limiter=self._limiter)
        return child

    async def snapshot(self) -> bytes:
        """`Session.snapshot`, on a worker thread."""
        session = await self._started()
        return await anyio.to_thread.run_sync(session.snapshot, limiter=self._limiter)

    async def aclose(self) -> None:
        """Release the guest (`Session.close`)."""
        if self._session is not None:
            self._session.close()
