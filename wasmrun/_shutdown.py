"""Stop wasmrun's background threads before the interpreter tears itself down.

Pool threads may be inside wasmtime (instantiating or warming a guest) and the
epoch ticker calls into the engine. If the interpreter finalises while they
do, native code runs against freed objects and the process dies with SIGSEGV
or SIGILL at exit. `atexit` handlers run before that teardown (and after
non-daemon threads were joined), so every background worker registers here
and is stopped and joined first.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Protocol


class Stoppable(Protocol):
    def stop(self, timeout: float) -> None: ...


_workers: weakref.WeakSet[Stoppable] = weakref.WeakSet()
_lock = threading.Lock()


def register(worker: Stoppable) -> None:
    """Stop `worker` (``worker.stop(timeout)``) when the interpreter exits."""
    with _lock:
        _workers.add(worker)


@atexit.register
def _stop_all() -> None:
    with _lock:
        workers = list(_workers)
    for worker in workers:
        try:
            worker.stop(10.0)
        except Exception:  # noqa: BLE001 - shutting down: do what we can for the others
            pass
