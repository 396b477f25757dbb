"""Cross-run leaks: nothing one run does is visible to the next, in the same long-lived sandbox.

Each case is a pair of runs: the first plants something (globals, patched
modules, files, random state, buffered output, then possibly dies), the second
looks for it.
"""

from __future__ import annotations

import pytest

from wasmrun import Limits, Sandbox

PLANTS = {
    "globals": ("planted = 42", "'planted' in globals()", "False"),
    "builtins": (
        "import builtins; builtins.planted = 42; builtins.len = lambda x: 0",
        "(hasattr(__builtins__, 'planted'), len('ab'))",
        "(False, 2)",
    ),
    "module-patch": ("import json; json.dumps = lambda *a, **k: 'pwned'", "import json; json.dumps([1])", "'[1]'"),
    "sys-modules": (
        "import sys, types; sys.modules['evil'] = types.ModuleType('evil')",
        "import sys; 'evil' in sys.modules",
        "False",
    ),
    "recursion-limit": ("import sys; sys.setrecursionlimit(50000)", "import sys; sys.getrecursionlimit()", "1000"),
    "cwd-and-env": ("import os; os.environ['PLANTED'] = '1'", "import os; os.environ.get('PLANTED')", None),
    "files": ("open('planted.txt', 'w').write('x')", "import os; os.path.exists('planted.txt')", "False"),
    "tools-module": (
        "import sys, types; sys.modules['tools'] = types.ModuleType('tools'); sys.modules['tools'].x = 1",
        "import tools; hasattr(tools, 'x')",
        "False",
    ),
}


@pytest.mark.parametrize("case", sorted(PLANTS))
def test_state_does_not_carry_over(box: Sandbox, case: str) -> None:
    plant, probe, expected = PLANTS[case]
    first = box.run(plant, files={"input.txt": "in"})
    assert first.error is None or first.error.type == "FileNotFoundError", first.error
    second = box.run(probe, files={"input.txt": "in"})
    assert second.ok, second.error
    assert second.value == expected


def test_random_state_is_fresh_per_run(box: Sandbox) -> None:
    draws = {box.run("import random; random.random()").value for _ in range(5)}
    assert len(draws) == 5  # fresh entropy each run: no two runs share a stream


def test_seeded_random_is_reproducible(image: str) -> None:
    with Sandbox(image=image, seed=1234, prewarm=0) as seeded:
        a = seeded.run("import random; random.random()").value
        b = seeded.run("import random; random.seed(99); random.random()").value  # a run reseeding itself...
        c = seeded.run("import random; random.random()").value  # ...changes nothing for the next one
    assert a == c and a != b


@pytest.mark.parametrize(
    ("killer", "limits"),
    [
        (
            "print('leaked-stdout', end='')\nimport sys; sys.stderr.write('leaked-stderr')\nwhile True: pass",
            Limits(timeout_s=0.5),
        ),
        (
            "print('leaked-stdout', end='')\nimport sys; sys.stderr.write('leaked-stderr')\nwhile True: pass",
            Limits(fuel=10**8),
        ),
        (
            "print('leaked-stdout', end='')\nimport sys; sys.stderr.write('leaked-stderr')\nx = []\n"
            "while True: x.append(bytearray(10**7))",
            Limits(),
        ),
        ("print('leaked-stdout', end='')\nimport os; os._exit(3)", Limits()),
    ],
    ids=["timeout", "fuel", "memory", "exit"],
)
def test_unflushed_output_of_a_killed_run_does_not_reach_the_next(box: Sandbox, killer: str, limits: Limits) -> None:
    dead = box.run(killer, limits=limits)
    assert dead.error is not None
    nxt = box.run("print('clean')")
    assert nxt.ok, nxt.error
    assert (nxt.stdout, nxt.stderr) == ("clean\n", "")


def test_input_files_are_per_run(box: Sandbox) -> None:
    first = box.run("open('a.txt').read()", files={"a.txt": "first"})
    assert first.value == "'first'"
    second = box.run("import os; sorted(os.listdir('.'))", files={"b.txt": "second"})
    assert second.ok, second.error
    assert "a.txt" not in (second.value or "")
