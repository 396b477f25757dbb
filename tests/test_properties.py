"""Hostile or arbitrary input never crashes the host; properties that hold for any input."""

from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasmrun import Limits, Result, RunError, RunStats

MiB = 1024 * 1024

FUZZ_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,  # keep the checkout clean (no .hypothesis/ directory)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_well_formed(result: object, code: str, error_kinds: frozenset[str]) -> Result:
    assert isinstance(result, Result)
    assert result.code == code
    assert isinstance(result.stdout, str) and isinstance(result.stderr, str)
    assert isinstance(result.stats, RunStats)
    assert result.stats.duration_s >= 0
    assert result.stats.fuel_used >= 0
    assert result.ok == (result.error is None)
    if result.error is not None:
        assert isinstance(result.error, RunError)
        assert result.error.kind in error_kinds
        assert isinstance(result.error.type, str) and result.error.type
        assert result.value is None
    return result


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [None, 42, 4.2, b"print(1)", bytearray(b"1"), ["1"], object()])
def test_non_str_code_is_a_type_error(sandbox, code: object) -> None:
    with pytest.raises(TypeError, match="code"):
        sandbox.run(code)  # type: ignore[arg-type]


BAD_CODE = {
    "nul-byte": "x = 1\x00\nprint(x)",
    "only-nul": "\x00",
    "lone-surrogate": "x = '\ud800'",
    "lone-low-surrogate": "\udfff",
    "surrogate-in-comment": "# \ud83d\n1",
    "huge-code": "x = 1\n" * (2 * MiB // 6 + 1),  # over the default 1 MiB max_code_bytes
    "nested-lists": "[" * 5000,
    "nested-lists-closed": "[" * 5000 + "]" * 5000,
    "nested-parens": "(" * 100_000 + ")" * 100_000,
    "nested-unary": "-" * 200_000 + "1",
    "nested-dicts": "{1:" * 3000 + "1" + "}" * 3000,
    "long-line": "x = " + "1 + " * 200_000 + "1",
    "bom": "\ufeffprint(1",
    "unterminated-string": "'''never closed",
    "tabs-and-spaces": "if True:\n\tx = 1\n        y = 2",
    "binary-garbage": "\x80\x81\xfe\xff\x01\x02",
}


@pytest.mark.parametrize("code", list(BAD_CODE.values()), ids=list(BAD_CODE))
def test_bad_code_returns_an_error_result(sandbox, assert_alive, error_kinds, code: str) -> None:
    result = assert_well_formed(sandbox.run(code), code, error_kinds)
    assert not result.ok
    assert result.error.kind in {"syntax", "exception", "memory"}, result.error
    assert result.error.message
    assert_alive()


def test_nul_byte_is_a_syntax_error(sandbox) -> None:
    result = sandbox.run("print('a')\x00")
    assert result.error.kind == "syntax"
    assert result.stdout == ""


def test_surrogate_is_a_syntax_error(sandbox) -> None:
    result = sandbox.run("x = '\ud800'")
    assert result.error.kind == "syntax"
    assert result.stdout == ""


def test_deep_nesting_is_a_syntax_error(sandbox) -> None:
    result = sandbox.run("[" * 5000)
    assert result.error.kind == "syntax"


def test_huge_code_message(sandbox) -> None:
    code = "#" * (1 * MiB + 1)
    result = sandbox.run(code)
    assert result.error.kind == "syntax"
    assert "max_code_bytes" in result.error.message


def test_deep_nesting_at_runtime(sandbox, assert_alive, error_kinds) -> None:
    """Deep structures built at run time (not parsed) also fail cleanly."""
    code = "x = []\nfor _ in range(200_000):\n    x = [x]\nrepr(x)"
    result = assert_well_formed(sandbox.run(code), code, error_kinds)
    assert not result.ok
    assert result.error.kind in {"exception", "memory"}
    assert_alive()


def test_code_with_unicode_is_fine(sandbox) -> None:
    result = sandbox.run("naïve = 'héllo ✓'\nnaïve + ' 🐍'")
    assert result.ok, result.error
    assert result.value == repr("héllo ✓ 🐍")


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

valid_limits = st.builds(
    Limits,
    timeout_s=st.floats(min_value=0.05, max_value=1.0),
    fuel=st.integers(min_value=1, max_value=10**10),
    memory_bytes=st.integers(min_value=64 * MiB, max_value=256 * MiB),
    max_output_bytes=st.integers(min_value=1, max_value=MiB),
    max_code_bytes=st.integers(min_value=1, max_value=MiB),
    recursion_limit=st.integers(min_value=50, max_value=5_000),
    max_value_chars=st.integers(min_value=1, max_value=100_000),
)

SNIPPETS = [
    "x = 1",
    "print(x)",
    "1 / 0",
    "while True: pass",
    "import time; time.sleep(5)",
    "print('a' * 10**6)",
    "[0] * 10**9",
    "raise SystemExit(2)",
    "import sys; sys.exit(0)",
    "def f(): return f()",
    "f()",
    "input()",
    "open('/etc/passwd')",
    "import os; os.environ",
    "'\\ud800'",
    "x",
    "(",
    "]",
    "\x00",
    "'" * 3,
    "import random; random.random()",
    "bytes(range(256))",
    "[i for i in range(1000)]",
]

code_strategy = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(blacklist_categories=())),  # includes lone surrogates
    st.lists(st.sampled_from(SNIPPETS), max_size=6).map("\n".join),
    st.lists(st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=8)), max_size=4).map(";".join),
)


@FUZZ_SETTINGS
@given(code=code_strategy, limits=valid_limits)
def test_property_arbitrary_code_never_crashes_the_host(sandbox, error_kinds, code: str, limits: Limits) -> None:
    result = assert_well_formed(sandbox.run(code, limits=limits), code, error_kinds)
    # No tools are registered, so a tool error is impossible.
    if result.error is not None:
        assert result.error.kind != "tool"
    # Output caps hold for whatever the code does.
    for stream in (result.stdout, result.stderr):
        assert len(stream.encode("utf-8", "surrogatepass")) <= limits.max_output_bytes + 3
    if result.value is not None:
        assert len(result.value) <= limits.max_value_chars


@FUZZ_SETTINGS
@given(text=st.text())
def test_property_print_round_trips(sandbox, text: str) -> None:
    code = f"import sys\nprint({text!r}, end='')\nprint({text!r}, end='', file=sys.stderr)\nlen({text!r})"
    result = sandbox.run(code)
    assert result.ok, result.error
    assert result.stdout == text
    assert result.stderr == text
    assert result.value == str(len(text))


@FUZZ_SETTINGS
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
        max_leaves=20,
    )
)
def test_property_value_is_repr_of_last_expression(sandbox, value: object) -> None:
    result = sandbox.run(f"_v = {value!r}\n_v")
    assert result.ok, result.error
    if value is None:
        assert result.value is None
    else:
        # Compare by value, not text: the guest's CPython may have a newer Unicode
        # database than the host's, so repr() may escape different characters.
        assert result.value is not None
        assert ast.literal_eval(result.value) == value
        assert type(ast.literal_eval(result.value)) is type(value)


@FUZZ_SETTINGS
@given(
    lines=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8),
    raise_at=st.integers(min_value=0, max_value=8),
)
def test_property_exception_lineno_points_at_raising_line(sandbox, lines: list[int], raise_at: int) -> None:
    statements = [f"v{i} = {n}" for i, n in enumerate(lines)]
    raise_at = min(raise_at, len(statements))
    statements.insert(raise_at, "raise LookupError('here')")
    result = sandbox.run("\n".join(statements))
    assert result.error is not None
    assert result.error.type == "LookupError"
    assert result.error.lineno == raise_at + 1
    assert f'File "<code>", line {raise_at + 1}' in result.error.traceback
