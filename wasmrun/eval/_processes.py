"""The processes backend: local worker processes, one warm `Checker` (sandbox) in each.

Why processes when a `Sandbox` is thread-safe: every run maps a fresh guest
instance into the address space and unmaps it afterwards, and on Linux those
mappings and the page faults of concurrent runs serialize on the one address
space of a process (``mmap_lock``, TLB shootdowns). Short runs, which is what
test programs are, then scale badly on threads (two threads measured *slower*
than one) and linearly on processes. Long, CPU-bound runs scale on threads too.
See ``wasmrun/eval/README.md``, "Throughput".

Each worker is ``python -m wasmrun.eval._worker`` (same interpreter, same
``wasmrun``), a `wasmrun._workers.WorkerProcess` spoken to over its pipe with
one msgpack message per batch (the framing `Sandbox`'s workers use). Plain
subprocesses rather than ``multiprocessing``: nothing depends on how the
caller's ``__main__`` can be re-imported (scripts without a main guard,
notebooks and ``python -`` all work), and nothing is forked from a process
that already runs wasmtime's threads. Verdicts are decided in the workers,
on the host side of their sandboxes, exactly as the thread backend does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, TypeAlias

from .._limits import Limits
from .._workers import START_TIMEOUT_S, Ready, WorkerDied, WorkerProcess
from ._outcome import Outcome, drain

#: Samples per batch sent to a worker: amortizes the pipe round trip, keeps the load balanced.
MAX_BATCH: Final = 8
#: Batches sent ahead to each worker, so it never waits for this process between batches.
IN_FLIGHT: Final = 2


#: What a worker sends: `Ready` once, then one list of ``(index, Outcome)`` per batch.
FromEvalWorker: TypeAlias = Ready | list[tuple[int, Outcome]]
#: What a worker is sent: `Limits` (as a dict) once, then batches of ``(index, program)``.
ToEvalWorker: TypeAlias = dict[str, Any] | list[tuple[int, str]]


class WorkerError(RuntimeError):
    """A worker process died or broke the protocol; the evaluation stops (its journal allows a resume)."""


class _Worker(WorkerProcess):
    """One ``python -m wasmrun.eval._worker`` process; every failure of it is a `WorkerError`."""

    def __init__(self) -> None:
        super().__init__("wasmrun.eval._worker", FromEvalWorker)

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except (WorkerDied, OSError, TimeoutError) as exc:
            what = f"{str(exc) or type(exc).__name__} ({self.describe_exit(wait_s=5)})"
            raise WorkerError(f"eval worker process {self.proc.pid} failed: {what}") from None

    def start(self, limits: Limits) -> None:
        """Give the worker its limits and wait until it has loaded the guest image."""
        with self._failures():
            self.channel.send(dataclasses.asdict(limits))
            self.wait_ready()

    def send(self, batch: Sequence[tuple[int, str]]) -> None:
        """Queue one batch of ``(index, program)`` (the worker answers batches in the order sent)."""
        with self._failures():
            self.channel.send(batch)

    def receive(self) -> list[tuple[int, Outcome]]:
        """The answer to the oldest batch sent and not yet received."""
        with self._failures():
            reply = self.channel.receive()
            if not isinstance(reply, list):
                raise WorkerDied(f"unexpected message {type(reply).__name__}")
            return reply


def _batches(jobs: Sequence[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    for start in range(0, len(jobs), size):
        yield list(jobs[start : start + size])


def run_processes(
    jobs: Sequence[tuple[int, str]], limits: Limits, workers: int, emit: Callable[[int, Outcome], None]
) -> int:
    """Check `jobs` ((index, program)) in `workers` processes; call `emit` in this thread; return the worker count."""
    count = max(1, min(workers, len(jobs)))
    batch_size = max(1, min(MAX_BATCH, len(jobs) // (count * IN_FLIGHT * 4)))
    todo = _batches(jobs, batch_size)
    lock = threading.Lock()
    stop = threading.Event()
    done: queue.Queue[list[tuple[int, Outcome]] | BaseException | None] = queue.Queue()
    pool = [_Worker() for _ in range(count)]

    def serve(worker: _Worker) -> None:
        try:
            worker.start(limits)
            outstanding = 0
            while True:
                while outstanding < IN_FLIGHT and not stop.is_set():  # keep the worker busy between answers
                    with lock:
                        batch = next(todo, None)
                    if batch is None:
                        break
                    worker.send(batch)
                    outstanding += 1
                if outstanding == 0:
                    break
                done.put(worker.receive())
                outstanding -= 1
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            done.put(exc)
        finally:
            done.put(None)

    threads = [
        threading.Thread(target=serve, args=(w,), name=f"wasmrun-eval-proc-{n}", daemon=True)
        for n, w in enumerate(pool)
    ]
    for thread in threads:
        thread.start()
    finished = False
    try:

        def emit_batch(batch: list[tuple[int, Outcome]]) -> None:
            for index, outcome in batch:
                emit(index, outcome)

        drain(done, len(threads), emit_batch)
        finished = True
    finally:
        stop.set()
        for worker in pool:
            worker.close(kill=not finished)
        for thread in threads:
            thread.join(timeout=START_TIMEOUT_S)
    return count
