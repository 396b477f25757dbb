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
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .._runstate import RunState


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
    __slots__ = ("args", "done", "error", "func", "kwargs", "value")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.done = Done()
        self.value: Any = None
        self.error: BaseException | None = None


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


class Workers:
    """Daemon threads that run handlers, so a hung handler can be abandoned at its deadline."""

    def __init__(self, max_threads: int) -> None:
        self._queue: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._idle = 0
        self._threads = 0
        self._max = max_threads
        self._lock = threading.Lock()

    def submit(self, job: Job) -> bool:
        with self._lock:
            if self._idle == 0:
                if self._threads >= self._max:
                    return False
                self._threads += 1
                threading.Thread(target=self._loop, name="wasmrun-tool", daemon=True).start()
            else:
                self._idle -= 1
        self._queue.put(job)
        return True

    def _loop(self) -> None:
        _in_handler.active = True
        while True:
            job = self._queue.get()
            try:
                value = job.func(*job.args, **job.kwargs)
                if inspect.isawaitable(value):
                    value = asyncio.run(_await(value))
                job.value = value
            except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit must not escape either
                job.error = exc
            finally:
                job.done.set()
            with self._lock:
                self._idle += 1


async def _await(value: Any) -> Any:
    return await value


_CANCEL_POLL_S = 0.005  # how soon a wait notices that its run was cancelled (one epoch tick)


def wait_for(done: Done, run: RunState | None, timeout_s: float) -> bool:
    """`done.wait(timeout_s)`, but False soon after the run is cancelled (`RunState.cancel`, an `AsyncSandbox` task).

    The handler itself keeps running (a thread cannot be killed); the caller stops the guest.
    """
    if run is None:
        return done.wait(timeout_s)
    end = time.monotonic() + timeout_s
    while not done.wait(min(_CANCEL_POLL_S, max(0.0, end - time.monotonic()))):
        if run.cancel.is_set() or time.monotonic() >= end:
            return False
    return True
