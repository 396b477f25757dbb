"""The threads backend: check samples on worker threads of this process, sharing one sandbox."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from .._limits import Limits
from ._outcome import Checker, Emit, Outcome, drain


def run_threads(jobs: Sequence[tuple[int, str]], limits: Limits, workers: int, emit: Emit) -> None:
    """Check `jobs` ((index, program)) on `workers` threads sharing one sandbox; call `emit` on this thread."""
    checker = Checker(limits)
    todo = iter(jobs)
    lock = threading.Lock()
    stop = threading.Event()
    done: queue.Queue[tuple[int, Outcome] | BaseException | None] = queue.Queue()

    def work() -> None:
        try:
            while not stop.is_set():
                with lock:
                    job = next(todo, None)
                if job is None:
                    break
                done.put((job[0], checker.check(job[1])))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            done.put(exc)
        finally:
            done.put(None)

    threads = [threading.Thread(target=work, name=f"wasmrun-eval-{n}", daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    try:
        drain(done, len(threads), lambda item: emit(*item))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=limits.timeout_s + 5)
        checker.close()
