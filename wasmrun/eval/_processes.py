"""The processes backend: local worker processes, one warm `Checker` (sandbox) in each.

Why processes when a `Sandbox` is thread-safe: every run maps a fresh guest
instance into the address space and unmaps it afterwards, and on Linux those
mappings and the page faults of concurrent runs serialize on the one address
space of a process (``mmap_lock``, TLB shootdowns). Short runs, which is what
test programs are, then scale badly on threads (two threads measured *slower*
than one) and linearly on processes. Long, CPU-bound runs scale on threads too.
See ``wasmrun/eval/README.md``, "Throughput".

Each worker is ``python -m wasmrun.eval._worker`` (same interpreter, same
``wasmrun``), spoken to over a pipe with one JSON line per batch. Plain
subprocesses rather than ``multiprocessing``: nothing depends on how the
caller's ``__main__`` can be re-imported (scripts without a main guard,
notebooks and ``python -`` all work), and nothing is forked from a process
that already runs wasmtime's threads. Verdicts are decided in the workers,
on the host side of their sandboxes, exactly as the thread backend does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

from .._limits import Limits
from ._outcome import Outcome, drain

#: Samples per batch sent to a worker: amortizes the pipe round trip, keeps the load balanced.
MAX_BATCH: Final = 8
#: Batches sent ahead to each worker, so it never waits for this process between batches.
IN_FLIGHT: Final = 2
#: How long a worker may take to start (import wasmrun, load the guest image).
START_TIMEOUT_S: Final = 120.0


class WorkerError(RuntimeError):
    """A worker process died or broke the protocol; the evaluation stops (its journal allows a resume)."""


def _worker_env() -> dict[str, str]:
    """The caller's environment, with this very ``wasmrun`` first on the import path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class _Worker:
    """One ``python -m wasmrun.eval._worker`` process."""

    def __init__(self, limits: Limits, env: dict[str, str]) -> None:
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wasmrun.eval._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self._send({"limits": dataclasses.asdict(limits)})

    def _send(self, message: Any) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise self._died(f"cannot write to it ({exc})") from None

    def _receive(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise self._died("it closed its output")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise self._died(f"it sent {line[:200]!r}") from None

    def _died(self, what: str) -> WorkerError:
        try:
            status = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            status = None
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        detail = f"\n{tail}" if tail else ""
        return WorkerError(f"eval worker process {self.proc.pid} failed: {what} (exit status {status}){detail}")

    def wait_ready(self) -> None:
        """Block until the worker has loaded the guest image."""
        if self._receive() != {"ready": True}:
            raise self._died("unexpected start-up message")

    def send(self, batch: Sequence[tuple[int, str]]) -> None:
        """Queue one batch of ``(index, program)`` (the worker answers batches in the order sent)."""
        self._send([list(job) for job in batch])

    def receive(self) -> list[tuple[int, Outcome]]:
        """The answer to the oldest batch sent and not yet received."""
        reply = self._receive()
        results: list[tuple[int, Outcome]] = []
        for index, outcome in reply:
            passed, result, category, error_type, duration = outcome
            results.append((int(index), (bool(passed), str(result), str(category), error_type, float(duration))))
        return results

    def close(self, *, kill: bool = False) -> None:
        """Stop the worker (politely: end of input; or at once)."""
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
    env = _worker_env()
    pool = [_Worker(limits, env) for _ in range(count)]

    def serve(worker: _Worker) -> None:
        try:
            worker.wait_ready()
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
