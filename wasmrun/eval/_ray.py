"""The Ray backend: one warm sandbox per actor, batches of samples, verdicts decided in the actors.

Ray is imported only when this backend is used (``pip install ray``). The
actors run on the hosts of the cluster, outside the sandbox: deciding a
verdict there is as trustworthy as deciding it in the driver. Every actor must
be able to import ``wasmrun`` (same environment, or a Ray ``runtime_env``).

`run_ray` uses the Ray session that is already initialized, if any (and leaves
it running); otherwise it starts one (``ray.init(address=...)``: a local
cluster when `address` is None) and shuts it down at the end.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, Final

from .._limits import Limits
from ._outcome import Checker, Outcome

#: Samples per actor call: large enough to amortize Ray's per-task overhead (~1 ms), small enough to balance load.
MAX_BATCH: Final = 16
#: Batches queued per actor, so an actor never waits for the driver between batches.
IN_FLIGHT: Final = 2


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError saying how to get it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ImportError(
            "the 'ray' backend needs Ray: pip install 'ray>=2.9' (or wasmrun's 'eval' extra, if your install has it)"
        ) from exc


class EvalActor:
    """Holds one warm `Checker` (sandbox + compiled guard); checks batches of programs in order."""

    def __init__(self, limits: Limits) -> None:
        self.checker = Checker(limits)
        self.checker.sandbox.run("pass")  # load the guest image now, not on the first batch

    def ready(self) -> bool:
        """True once the sandbox is warm (used to wait for actor start-up)."""
        return True

    def check_batch(self, batch: Sequence[tuple[int, str]]) -> list[tuple[int, Outcome]]:
        """Check each ``(index, program)``; return ``(index, outcome)`` in the same order."""
        return [(index, self.checker.check(program)) for index, program in batch]


def run_ray(
    jobs: Sequence[tuple[int, str]],
    limits: Limits,
    workers: int | None,
    emit: Callable[[int, Outcome], None],
    *,
    address: str | None = None,
) -> int:
    """Check `jobs` on Ray actors (`workers` of them, default one per cluster CPU); return the actor count."""
    ray = import_ray()
    owns_session = not ray.is_initialized()
    if owns_session:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    actors: list[Any] = []
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        count = workers or max(1, int(cpus))
        count = max(1, min(count, len(jobs)))
        per_actor = min(1.0, cpus / count) if cpus > 0 else 0.0
        actor_class = ray.remote(num_cpus=per_actor, max_restarts=0)(EvalActor)
        actors = [actor_class.remote(limits) for _ in range(count)]
        ray.get([actor.ready.remote() for actor in actors])

        batch_size = max(1, min(MAX_BATCH, len(jobs) // (count * IN_FLIGHT * 4) or 1))
        todo = iter(range(0, len(jobs), batch_size))
        pending: dict[Any, Any] = {}

        def submit(actor: Any) -> bool:
            start = next(todo, None)
            if start is None:
                return False
            pending[actor.check_batch.remote(list(jobs[start : start + batch_size]))] = actor
            return True

        for actor in actors:
            for _ in range(IN_FLIGHT):
                submit(actor)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                actor = pending.pop(ref)
                for index, outcome in ray.get(ref):
                    emit(index, tuple(outcome))
                submit(actor)
        return count
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - best effort: the actor may already be gone
                pass
        if owns_session:
            ray.shutdown()
