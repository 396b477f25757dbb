"""Where tool handlers run: worker threads with a timeout, inline calls, and the shared rate limit.

A handler runs on a daemon worker thread so that one that hangs can be
abandoned at its own timeout or the run's deadline; ``inline=True`` handlers
run on the calling thread instead. Either way, whatever a handler raises
(``KeyboardInterrupt`` and ``SystemExit`` included) is captured in its `Job`,
never propagated across the guest boundary.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from .._runstate import RunState
from . import _affinity


class RateLimiter:
    """A token bucket: `calls` per `per_s` seconds, shared by every run of the registry."""

    def __init__(self, calls: int, per_s: float) -> None:
        self.capacity = float(calls)
        self.rate = calls / per_s
        self.tokens = float(calls)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class Done:
    """A one-shot completion flag, set once by the thread that finishes a job.

    What `threading.Event` does for this use, at a fraction of its cost (one
    lock, waited on in C, instead of a condition variable built per wait): it is
    made, set and waited for on every tool call.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def is_set(self) -> bool:
        return self.wait(0.0)

    def wait(self, timeout_s: float) -> bool:
        """True once `set` was called, waiting at most `timeout_s` seconds for it."""
        if self._lock.acquire(timeout=max(timeout_s, 0.0)):
            self._lock.release()
            return True
        return False


class Job:
    __slots__ = ("args", "done", "error", "func", "kwargs", "value", "worker")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.done = Done()
        self.value: Any = None
        self.error: BaseException | None = None
        self.worker: _Worker | None = None  # the thread it was handed to


_in_handler = threading.local()


def in_tool_handler() -> bool:
    """True on a worker thread while it runs a tool handler (used to refuse re-entrant runs)."""
    return bool(getattr(_in_handler, "active", False))


def run_inline(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, BaseException | None]:
    """Call an ``inline=True`` handler on this thread: ``(value, None)`` or ``(None, what it raised)``."""
    previous = getattr(_in_handler, "active", False)
    _in_handler.active = True
    try:
        return func(*args, **kwargs), None
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit must not escape either
        return None, exc
    finally:
        _in_handler.active = previous


class _Worker:
    """One handler thread's mailbox: `wake` is held while the thread waits for its next job."""

    __slots__ = ("home", "job", "pinned_cpu", "thread_id", "wake")

    def __init__(self, job: Job) -> None:
        self.job: Job | None = job
        self.wake = threading.Lock()
        self.wake.acquire()
        self.thread_id = 0
        self.home: frozenset[int] | None = None
        self.pinned_cpu: int | None = None


class Workers:
    """Daemon threads that run handlers, so a hung handler can be abandoned at its deadline.

    Each idle thread waits on its own lock, and a job goes to the thread that
    finished last (its stack and the handler's data are the warmest). On Linux
    the caller first moves that thread onto its own CPU (`_affinity`): the
    caller is about to block until the job is done, so the wake-ups both ways
    stay on one CPU instead of waking the other, idle one, which costs a VM
    ~30 us each way. `wait_for` gives a handler that runs long its whole CPU
    set back.
    """

    def __init__(self, max_threads: int) -> None:
        self._idle: list[_Worker] = []
        self._threads = 0
        self._max = max_threads
        self._lock = threading.Lock()

    def submit(self, job: Job) -> bool:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                if self._threads >= self._max:
                    return False
                self._threads += 1
        if worker is None:
            job.worker = worker = _Worker(job)
            try:
                threading.Thread(target=self._loop, args=(worker,), name="wasmrun-tool", daemon=True).start()
            except RuntimeError:  # "can't start new thread": the process is at its limit
                with self._lock:
                    self._threads -= 1
                return False
            return True
        job.worker = worker
        worker.job = job
        _affinity.follow_caller(worker)
        worker.wake.release()
        return True

    def _loop(self, worker: _Worker) -> None:
        _in_handler.active = True
        worker.thread_id = threading.get_native_id()
        worker.home = _affinity.allowed()
        while True:
            job = worker.job
            assert job is not None
            worker.job = None
            try:
                try:
                    value = job.func(*job.args, **job.kwargs)
                    if inspect.isawaitable(value):
                        value = asyncio.run(_await(value))
                    job.value = value
                except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit must not escape either
                    job.error = exc
            finally:
                with self._lock:
                    self._idle.append(worker)
                job.done.set()  # last: once the caller runs again, this thread only goes to sleep
            worker.wake.acquire()


async def _await(value: Any) -> Any:
    return await value


_CANCEL_POLL_S = 0.005  # how soon a wait notices that its run was cancelled (one epoch tick)


def wait_for(job: Job, run: RunState | None, timeout_s: float) -> bool:
    """Wait for a submitted job: True once done; False at `timeout_s`, or soon after the run is cancelled
    (`RunState.cancel`, an `AsyncSandbox` task).

    The handler itself keeps running (a thread cannot be killed); the caller stops the guest. A
    handler still running after `_affinity.RELEASE_AFTER_S` is no longer held on the caller's CPU.
    """
    end = time.monotonic() + timeout_s
    if job.done.wait(min(_affinity.RELEASE_AFTER_S, timeout_s)):
        return True
    if job.worker is not None:
        _affinity.release(job.worker)
    if run is None:
        return job.done.wait(end - time.monotonic())
    while not job.done.wait(min(_CANCEL_POLL_S, max(0.0, end - time.monotonic()))):
        if run.cancel.is_set() or time.monotonic() >= end:
            return False
    return True
