"""Sandbox behaviour: what a Result holds, fresh instances per run, seeding, the API, threads."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import IMAGES

import wasmrun
from wasmrun import Limits, Result, RunError, RunStats, Sandbox, SandboxClosedError

# Names that only occur in the guest shim or its runtime: none of them may leak
# into a traceback shown to the user.
SHIM_MARKERS = (
    "app.py",
    "wasmrun_core",
    "wasmrun_component",
    "_execute",
    "_user_traceback",
    "wit_world",
    "componentize",
    "WitWorld",
)


def assert_no_shim_frames(traceback: str) -> None:
    for marker in SHIM_MARKERS:
        assert marker not in traceback, f"shim frame {marker!r} leaked into the traceback:\n{traceback}"


# ---------------------------------------------------------------------------
# Values, REPL-style
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "value"),
    [
        ("1 + 1", "2"),
        ("x = 6\nx * 7", "42"),
        ("'hi'", "'hi'"),
        ("[1, 'a', None]", "[1, 'a', None]"),
        ("{'k': (1, 2.5)}", "{'k': (1, 2.5)}"),
        ("x = 1\nx  # trailing comment\n\n", "1"),
        ("import math\nmath.pi", repr(3.141592653589793)),
        ("if True:\n    y = 3\ny", "3"),
        ("False", "False"),
        ("0", "0"),
        ("''", "''"),
    ],
)
def test_value_of_last_expression(sandbox, code: str, value: str) -> None:
    result = sandbox.run(code)
    assert result.ok, result.error
    assert result.value == value


@pytest.mark.parametrize(
    "code",
    [
        "x = 1",
        "def f():\n    return 1",
        "import os",
        "for i in range(3):\n    i",
        "1\nx = 2",  # the expression is not last
        "None",
        "print('x')",  # evaluates to None
        "[].append(1)",
        "",
        "# only a comment",
        "   \n\n",
    ],
)
def test_no_value_for_statements_or_none(sandbox, code: str) -> None:
    result = sandbox.run(code)
    assert result.ok, result.error
    assert result.value is None


def test_value_is_repr_not_str(sandbox) -> None:
    result = sandbox.run(
        "class P:\n    def __repr__(self):\n        return 'P<repr>'\n    def __str__(self):\n"
        "        return 'P<str>'\nP()"
    )
    assert result.value == "P<repr>"


def test_last_expression_runs_once(sandbox) -> None:
    result = sandbox.run("n = []\ndef f():\n    n.append(1)\n    print('called')\n    return len(n)\nf()")
    assert result.ok
    assert result.stdout == "called\n"
    assert result.value == "1"


# ---------------------------------------------------------------------------
# Output capture
# ---------------------------------------------------------------------------


def test_stdout_and_stderr_are_captured_separately(sandbox) -> None:
    code = "import sys\nprint('out 1')\nprint('err 1', file=sys.stderr)\nsys.stdout.write('out 2')\n"
    code += "sys.stderr.write('err 2')\n'v'"
    result = sandbox.run(code)
    assert result.ok, result.error
    assert result.stdout == "out 1\nout 2"
    assert result.stderr == "err 1\nerr 2"
    assert result.value == "'v'"


def test_binary_stdout_buffer(sandbox) -> None:
    result = sandbox.run("import sys\nsys.stdout.buffer.write(b'raw bytes\\n')\nsys.stdout.buffer.flush()")
    assert result.ok, result.error
    assert result.stdout == "raw bytes\n"


def test_print_and_os_write_keep_order(sandbox) -> None:
    result = sandbox.run("import os\nprint('a')\nos.write(1, b'b\\n')\nprint('c')")
    assert result.ok, result.error
    assert result.stdout == "a\nb\nc\n"


def test_unicode_output(sandbox) -> None:
    result = sandbox.run("print('héllo wörld ✓ 🐍 日本')")
    assert result.stdout == "héllo wörld ✓ 🐍 日本\n"


def test_warnings_go_to_stderr(sandbox) -> None:
    result = sandbox.run("import warnings\nwarnings.warn('careful')")
    assert result.ok
    assert "UserWarning: careful" in result.stderr
    assert result.stdout == ""


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_exception_details(sandbox) -> None:
    code = "x = 1\ny = 2\n\ndef f():\n    raise ValueError('boom')\n\nf()\n"
    result = sandbox.run(code)
    assert not result.ok
    err = result.error
    assert err.kind == "exception"
    assert err.type == "ValueError"
    assert err.message == "boom"
    assert err.lineno == 5
    assert 'File "<code>", line 7, in <module>' in err.traceback
    assert 'File "<code>", line 5, in f' in err.traceback
    assert "raise ValueError('boom')" in err.traceback  # the source line is shown
    assert err.traceback.rstrip().endswith("ValueError: boom")
    assert_no_shim_frames(err.traceback)
    assert result.value is None


def test_exception_in_last_expression(sandbox) -> None:
    result = sandbox.run("a = 0\n\n1 / a")
    assert result.error.kind == "exception"
    assert result.error.type == "ZeroDivisionError"
    assert result.error.lineno == 3
    assert 'File "<code>", line 3' in result.error.traceback
    assert_no_shim_frames(result.error.traceback)


def test_chained_exception_traceback(sandbox) -> None:
    code = "try:\n    1 / 0\nexcept ZeroDivisionError:\n    raise KeyError('k')"
    result = sandbox.run(code)
    assert result.error.type == "KeyError"
    assert result.error.lineno == 4
    tb = result.error.traceback
    assert "ZeroDivisionError" in tb and "During handling of the above exception" in tb
    assert 'File "<code>", line 2' in tb and 'File "<code>", line 4' in tb
    assert_no_shim_frames(tb)


def test_exception_from_stdlib_points_at_user_line(sandbox) -> None:
    result = sandbox.run("import json\n\njson.loads('{bad')")
    assert result.error.kind == "exception"
    assert result.error.type == "JSONDecodeError"
    assert 'File "<code>", line 3' in result.error.traceback
    assert_no_shim_frames(result.error.traceback)


def test_custom_exception_type_name(sandbox) -> None:
    result = sandbox.run("class MyError(Exception):\n    pass\n\nraise MyError('custom')")
    assert result.error.type == "MyError"
    assert result.error.message == "custom"
    assert result.error.lineno == 4


def test_exception_with_broken_str(sandbox) -> None:
    result = sandbox.run("class E(Exception):\n    def __str__(self):\n        raise ValueError('no')\n\nraise E()")
    assert result.error.kind == "exception"
    assert result.error.type == "E"
    assert result.error.lineno == 5


def test_lone_surrogate_in_exception_message(sandbox, assert_alive) -> None:
    result = sandbox.run("x = 1\nraise ValueError('bad \\ud800 text')")
    assert result.error is not None
    assert result.error.kind == "exception", result.error
    assert result.error.type == "ValueError"
    assert result.error.lineno == 2
    assert result.error.message.startswith("bad ")
    assert_alive()


def test_lone_surrogate_in_value_repr(sandbox, assert_alive) -> None:
    result = sandbox.run("class R:\n    def __repr__(self):\n        return 'r\\udcff'\nR()")
    assert result.ok, result.error
    assert result.value is not None and result.value.startswith("r")
    assert_alive()


def test_failing_repr_of_value(sandbox) -> None:
    result = sandbox.run("class R:\n    def __repr__(self):\n        raise ValueError('no repr')\nR()")
    assert result.error is not None
    assert result.error.kind == "exception"
    assert result.error.type == "ValueError"
    assert result.error.lineno == 3


def test_syntax_error(sandbox) -> None:
    result = sandbox.run("x = 1\ny = 2\nif x > :\n    pass\n")
    assert not result.ok
    assert result.error.kind == "syntax"
    assert result.error.type == "SyntaxError"
    assert result.error.lineno == 3
    assert "<code>" in result.error.traceback
    assert_no_shim_frames(result.error.traceback)
    assert result.stdout == "" and result.value is None


def test_syntax_error_unclosed_bracket(sandbox) -> None:
    result = sandbox.run("x = 1\ny = (\n")
    assert result.error.kind == "syntax"
    assert result.error.lineno == 2


def test_indentation_error(sandbox) -> None:
    result = sandbox.run("def f():\nreturn 1")
    assert result.error.kind == "syntax"
    assert result.error.type == "IndentationError"
    assert result.error.lineno == 2


def test_syntax_error_means_nothing_runs(sandbox) -> None:
    result = sandbox.run("print('should not run')\n)")
    assert result.error.kind == "syntax"
    assert result.stdout == ""


def test_runtime_syntax_error_is_an_exception(sandbox) -> None:
    result = sandbox.run("x = 1\neval('1 +')")
    assert result.error.kind == "exception"
    assert result.error.type == "SyntaxError"


# ---------------------------------------------------------------------------
# sys.exit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["import sys\nsys.exit(0)", "import sys\nsys.exit()", "raise SystemExit", "import sys\nsys.exit(None)"]
)
def test_exit_zero_is_ok(sandbox, code: str) -> None:
    result = sandbox.run("print('before')\n" + code + "\nprint('after')")
    assert result.ok, result.error
    assert result.exit_code == 0
    assert result.stdout == "before\n"


def test_exit_nonzero_is_an_error(sandbox) -> None:
    result = sandbox.run("import sys\nprint('bye')\nsys.exit(3)")
    assert not result.ok
    assert result.exit_code == 3
    assert result.error.kind == "exception"
    assert result.error.type == "SystemExit"
    assert result.error.lineno == 3
    assert result.stdout == "bye\n"


def test_exit_with_message(sandbox) -> None:
    result = sandbox.run("import sys\nsys.exit('fatal: no input')")
    assert not result.ok
    assert result.exit_code == 1
    assert "fatal: no input" in result.error.message


def test_normal_end_has_no_exit_code(sandbox) -> None:
    assert sandbox.run("1").exit_code is None


def test_exit_true_is_exit_code_one(sandbox) -> None:
    result = sandbox.run("import sys\nsys.exit(True)")
    assert result.error is not None and result.error.kind == "exception"
    assert result.exit_code == 1


def test_os_exit_reports_exit_code(sandbox) -> None:
    result = sandbox.run("import os\nprint('x')\nos._exit(0)")
    assert result.ok, result.error
    assert result.exit_code == 0
    assert result.stdout == "x\n"


# ---------------------------------------------------------------------------
# Partial output survives failures
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "limits", "kind"),
    [
        ("raise RuntimeError('late')", None, "exception"),
        ("while True:\n    pass", Limits(fuel=20_000_000), "fuel"),
        ("while True:\n    pass", Limits(timeout_s=0.3, fuel=10**14), "timeout"),
        ("import time\ntime.sleep(30)", Limits(timeout_s=0.3), "timeout"),
        ("x = []\nwhile True:\n    x.append(bytearray(1 << 20))", Limits(memory_bytes=96 * 1024 * 1024), "memory"),
    ],
    ids=["exception", "fuel", "timeout-compute", "timeout-sleep", "memory"],
)
def test_partial_output_is_kept(sandbox, assert_alive, tail: str, limits: Limits | None, kind: str) -> None:
    code = "import sys\nprint('line 1')\nprint('progress', end='', flush=True)\nprint('warn', file=sys.stderr)\n"
    code += tail
    result = sandbox.run(code, limits=limits)
    assert result.error is not None and result.error.kind == kind
    assert result.stdout == "line 1\nprogress"
    assert result.stderr.startswith("warn\n")
    assert_alive()


# ---------------------------------------------------------------------------
# The Result record
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "limits"),
    [
        ("import time\ntime.sleep(60)", Limits(timeout_s=1.0)),
        ("while True:\n    pass", Limits(timeout_s=1.0, fuel=10**14)),
    ],
    ids=["sleep", "compute"],
)
def test_many_lines_before_a_hang_are_kept(sandbox, tail: str, limits: Limits) -> None:
    """Output printed well before the deadline must not be lost when the run is stopped."""
    result = sandbox.run("for i in range(200):\n    print(i)\n" + tail, limits=limits)
    assert result.error is not None and result.error.kind == "timeout"
    assert result.stdout == "".join(f"{i}\n" for i in range(200))


def test_result_is_frozen(sandbox) -> None:
    result = sandbox.run("print(1)\nraise ValueError")
    assert isinstance(result, Result)
    with pytest.raises((AttributeError, TypeError)):
        result.stdout = "forged"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        result.error = None  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        result.error.kind = "internal"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        result.stats.fuel_used = 0  # type: ignore[misc]
    assert result.stdout == "1\n"
    assert not result.ok


def test_result_fields(sandbox) -> None:
    code = "print('hi')\n40 + 2"
    result = sandbox.run(code)
    assert result.code == code
    assert result.ok is True
    assert result.error is None
    assert isinstance(result.stats, RunStats)
    assert result.stats.duration_s > 0
    assert result.stats.fuel_used > 0
    assert result.stats.tool_calls == 0


def test_result_to_dict_is_json(sandbox) -> None:
    result = sandbox.run("print('a')\nraise KeyError('k')")
    data = result.to_dict()
    decoded = json.loads(json.dumps(data))
    assert decoded["ok"] is False
    assert decoded["stdout"] == "a\n"
    assert decoded["error"]["kind"] == "exception"
    assert decoded["error"]["type"] == "KeyError"
    assert isinstance(result.error, RunError)


# ---------------------------------------------------------------------------
# Fresh instance per run
# ---------------------------------------------------------------------------


def test_globals_do_not_leak(sandbox) -> None:
    assert sandbox.run("leaked_global = 123").ok
    result = sandbox.run("leaked_global")
    assert result.error is not None and result.error.type == "NameError"
    assert sandbox.run("'leaked_global' in globals()").value == "False"


def test_sys_modules_additions_do_not_leak(sandbox) -> None:
    setup = "import sys, types\nm = types.ModuleType('evil_mod')\nm.x = 1\nsys.modules['evil_mod'] = m\nimport evil_mod"
    assert sandbox.run(setup).ok
    assert sandbox.run("import sys\n'evil_mod' in sys.modules").value == "False"
    result = sandbox.run("import evil_mod")
    assert result.error is not None and result.error.type == "ModuleNotFoundError"


def test_module_attribute_patches_do_not_leak(sandbox) -> None:
    assert sandbox.run("import math, collections\nmath.sqrt = lambda x: -1\ncollections.Counter = None").ok
    assert sandbox.run("import math, collections\n(math.sqrt(16), collections.Counter('aab')['a'])").value == "(4.0, 2)"


def test_patching_json_does_not_break_the_run(sandbox) -> None:
    result = sandbox.run("import json\njson.dumps = lambda *a, **k: 'pwned'\nprint('done')\n7")
    assert result.ok, result.error
    assert result.stdout == "done\n"
    assert result.value == "7"


def test_builtin_patches_do_not_leak(sandbox) -> None:
    patch = "import builtins\nbuiltins.print = lambda *a, **k: None\nbuiltins.len = lambda x: -1\nbuiltins.evil = 1"
    assert sandbox.run(patch).ok
    result = sandbox.run("print('visible')\nlen([1, 2])")
    assert result.stdout == "visible\n"
    assert result.value == "2"
    assert sandbox.run("import builtins\nhasattr(builtins, 'evil')").value == "False"


def test_sys_state_does_not_leak(sandbox) -> None:
    assert sandbox.run("import sys\nsys.path.append('/evil')\nsys.setrecursionlimit(60)\nsys.stdout = None").ok
    result = sandbox.run("import sys\nprint('still here')\n('/evil' in sys.path, sys.getrecursionlimit())")
    assert result.stdout == "still here\n"
    assert result.value == f"(False, {sandbox.limits.recursion_limit})"


def test_random_state_does_not_leak(sandbox) -> None:
    import random

    expected_after_seed = repr(random.Random(1234).random())
    assert sandbox.run("import random\nrandom.seed(1234)").ok
    values = {sandbox.run("import random\nrandom.random()").value for _ in range(5)}
    assert expected_after_seed not in values
    assert len(values) == 5, "unseeded runs must not share a random state"


@pytest.mark.parametrize("image", IMAGES)
def test_guest_sees_the_real_random_seed(image: str) -> None:
    """The default image hands componentize-py a stand-in `random.seed` at build time: no run may see it."""
    with Sandbox(image=image, prewarm=0) as sb:
        probe = "import random\n(random.seed.__self__ is random._inst, random.seed.__func__ is random.Random.seed)"
        assert sb.run(probe).value == "(True, True)"
        reseeded = sb.run("import random\nrandom.seed(7)\nrandom.random()").value
        assert reseeded == repr(__import__("random").Random(7).random())


@pytest.mark.parametrize(
    ("code", "value"),
    [
        ("6 * 7", "42"),
        ("6 * 7  # six times seven", "42"),
        ("x = 6\nx * 7", "42"),
        ("(6 *\n 7)", "42"),
        ("print(1)", None),
    ],
)
def test_value_of_one_expression_or_the_last(sandbox, code: str, value: str | None) -> None:
    result = sandbox.run(code)
    assert result.ok, result.error
    assert result.value == value


@pytest.mark.parametrize(
    ("code", "error_type"),
    [(c, "SyntaxError") for c in ("x = = 1", "yield 1", "await f()", "return 5", "1 +")]
    + [("  6 * 7", "IndentationError")],
)
def test_one_line_syntax_errors_are_reported_as_before(sandbox, code: str, error_type: str) -> None:
    result = sandbox.run(code)
    assert result.error is not None and result.error.kind == "syntax", result.error
    assert result.error.type == error_type and result.error.lineno == 1


def test_seed_makes_random_reproducible() -> None:
    code = "import random\n(random.random(), random.randint(0, 10**9), random.sample(range(100), 5))"
    with Sandbox(seed=42) as a, Sandbox(seed=42) as b, Sandbox(seed=43) as c:
        first = a.run(code).value
        assert first is not None
        assert a.run(code).value == first
        assert b.run(code).value == first
        assert c.run(code).value != first


# ---------------------------------------------------------------------------
# API surface
# ---------------------------------------------------------------------------


def test_module_level_run() -> None:
    result = wasmrun.run("print(6 * 7)\n6 * 7")
    assert result.ok
    assert result.stdout == "42\n"
    assert result.value == "42"


def test_module_level_run_with_limits() -> None:
    result = wasmrun.run("while True: pass", limits=Limits(fuel=10_000_000))
    assert result.error.kind == "fuel"


def test_sandbox_defaults() -> None:
    with Sandbox() as sb:
        assert sb.limits == Limits()
        assert sb.run("1").value == "1"


@pytest.mark.parametrize("limits", ["fast", {"timeout_s": 1}, 5])
def test_sandbox_rejects_bad_limits(limits: object) -> None:
    with pytest.raises(TypeError, match="limits"):
        Sandbox(limits=limits)  # type: ignore[arg-type]


@pytest.mark.parametrize("limits", ["fast", {"timeout_s": 1}])
def test_run_rejects_bad_limits(sandbox, limits: object) -> None:
    with pytest.raises(TypeError, match="limits"):
        sandbox.run("1", limits=limits)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [True, "42", 4.2])
def test_sandbox_rejects_bad_seed(seed: object) -> None:
    with pytest.raises(TypeError, match="seed"):
        Sandbox(seed=seed)  # type: ignore[arg-type]


def test_closed_sandbox_refuses_runs() -> None:
    with Sandbox() as sb:
        assert sb.run("1").ok
    with pytest.raises(SandboxClosedError):
        sb.run("1")
    other = Sandbox()
    other.close()
    with pytest.raises(SandboxClosedError):
        other.run("1")
    assert isinstance(SandboxClosedError("x"), wasmrun.WasmrunError)


def test_sandbox_is_reusable(sandbox) -> None:
    for i in range(10):
        result = sandbox.run(f"print({i})\n{i} * 2")
        assert result.stdout == f"{i}\n"
        assert result.value == str(i * 2)


# ---------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------


def _program(i: int) -> tuple[str, Limits | None, str | None]:
    """Program i prints a unique marker; some of them then fail in different ways."""
    marker = f"print('marker-{i}-{i * 7919}')\n"
    kind = i % 4
    if kind == 0:
        return marker + f"sum(range({i * 1000}))", None, None
    if kind == 1:
        return marker + "import time\ntime.sleep(60)", Limits(timeout_s=0.5), "timeout"
    if kind == 2:
        return marker + "while True:\n    pass", Limits(timeout_s=0.5, fuel=10**14), "timeout"
    return marker + f"raise ValueError('error-{i}')", None, "exception"


def test_concurrent_runs_do_not_mix(sandbox) -> None:
    programs = [_program(i) for i in range(8)]

    def go(item: tuple[int, tuple[str, Limits | None, str | None]]) -> Result:
        _, (code, limits, _) = item
        return sandbox.run(code, limits=limits)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(go, enumerate(programs)))

    for i, ((code, _, kind), result) in enumerate(zip(programs, results, strict=True)):
        assert result.code == code
        assert result.stdout == f"marker-{i}-{i * 7919}\n", (i, result)
        assert result.stderr == ""
        if kind is None:
            assert result.ok, (i, result.error)
            assert result.value == str(sum(range(i * 1000)))
        else:
            assert result.error is not None and result.error.kind == kind, (i, result.error)
            if kind == "exception":
                assert result.error.message == f"error-{i}"


def test_concurrent_fuel_accounting_is_per_run(sandbox) -> None:
    """Fuel exhaustion on one thread must not be attributed to runs on other threads."""
    codes = []
    for i in range(8):
        if i % 2:
            codes.append((f"print({i})\nwhile True:\n    pass", Limits(fuel=30_000_000), "fuel"))
        else:
            codes.append((f"print({i})\nsum(range(50_000))", None, None))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: sandbox.run(c[0], limits=c[1]), codes))

    for i, ((_, _, kind), result) in enumerate(zip(codes, results, strict=True)):
        assert result.stdout == f"{i}\n"
        if kind is None:
            assert result.ok, (i, result.error)
            assert result.value == str(sum(range(50_000)))
        else:
            assert result.error is not None and result.error.kind == kind


def test_concurrent_output_caps_are_per_run(sandbox) -> None:
    flood = "while True:\n    print('f' * 100)"
    quiet = "print('q' * 150)"
    jobs = [(flood if i % 2 else quiet) for i in range(8)]
    limits = Limits(max_output_bytes=1000)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda code: sandbox.run(code, limits=limits), jobs))
    for code, result in zip(jobs, results, strict=True):
        if code is flood:
            assert result.error.kind == "output_limit"
            assert re.fullmatch(r"(f{100}\n)*f*", result.stdout)
            assert len(result.stdout) == 1000
        else:
            assert result.ok
            assert result.stdout == "q" * 150 + "\n"


def test_unclosed_sandbox_releases_its_pool_thread() -> None:
    import gc
    import threading
    import time

    def pool_threads() -> int:
        names = ("wasmrun-prewarm", "wasmrun-pool-close")
        return sum(1 for t in threading.enumerate() if t.name in names and t.is_alive())

    before = pool_threads()
    sandboxes = [wasmrun.Sandbox(prewarm=1) for _ in range(3)]
    assert sandboxes[0].run("1 + 1").value == "2"
    assert pool_threads() >= before + 6  # a making and a closing thread each
    del sandboxes
    gc.collect()
    deadline = time.monotonic() + 10
    while pool_threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool_threads() <= before


def test_process_exits_cleanly_after_runs_with_tools_and_live_pools() -> None:
    """Interpreter teardown with live pools, tickers and linkers must not crash (it once died with SIGSEGV)."""
    import subprocess
    import sys

    code = (
        "import wasmrun\n"
        "reg = wasmrun.ToolRegistry()\n"
        "@reg.tool\n"
        "def add(a: int, b: int) -> int:\n"
        "    '''Add.'''\n"
        "    return a + b\n"
        "sb = wasmrun.Sandbox(tools=reg, prewarm=2)\n"
        "print(sb.run('import tools; tools.add(2, 3)').value)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "5"


def test_pool_warms_its_instances_only_while_the_caller_is_idle() -> None:
    # A warm-up of the default image costs about what it saves a run; warming while runs come back
    # to back made them slower. So the pool refills with cold instances and warms them when idle.
    with wasmrun.Sandbox(prewarm=2, executor="inline") as sb:
        pool = sb._pool
        assert pool is not None
        deadline = time.monotonic() + 30
        while len(pool._ready) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool._ready) == 2 and not pool._cold  # idle: both warmed
        warmed = []
        for _ in range(6):
            assert sb.run("print(1)").stdout == "1\n"
            warmed.append(len(pool._ready))
        assert warmed[-1] == 0  # back to back: used up, refilled cold, not warmed meanwhile
        deadline = time.monotonic() + 30
        while len(pool._ready) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool._ready) == 2
