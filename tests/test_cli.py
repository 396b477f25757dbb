"""Tests for the ``wasmrun`` command line (wasmrun/cli/)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import wasmrun
from wasmrun.cli import SizeError, app, build_limits, parse_size

runner = CliRunner()

WASMRUN_EXE = Path(sys.executable).parent / "wasmrun"

_BOX = re.compile(r"[\u2500-\u257f]")  # rich panel borders


def plain(text: str) -> str:
    """`text` without panel borders and with whitespace collapsed, so wrapped messages can be matched."""
    return " ".join(_BOX.sub(" ", text).split())


def invoke(*args: str, stdin: str | bytes | None = None) -> typer.testing.Result:
    return runner.invoke(app, list(args), input=stdin)


def write(tmp_path: Path, code: str, name: str = "prog.py") -> str:
    path = tmp_path / name
    path.write_text(code, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------ success


def test_run_file_prints_stdout_and_value(tmp_path: Path) -> None:
    result = invoke("run", write(tmp_path, 'print("hi")\nx = 6\nx * 7\n'))
    assert result.exit_code == 0, result.output
    assert result.stdout == "hi\n42\n"
    assert result.stderr == ""


def test_run_stdin_keeps_guest_stderr_separate() -> None:
    code = 'import sys\nprint("out")\nprint("err", file=sys.stderr)\n'
    result = invoke("run", "-", stdin=code)
    assert result.exit_code == 0, result.output
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"


def test_output_is_passed_through_exactly() -> None:
    code = 'import sys\n_ = sys.stdout.write("a\\tb  \\n\\nhéllo ✓ \\x1b[1mbold\\x1b[0m")\n'
    result = invoke("run", "-", stdin=code)
    assert result.exit_code == 0
    assert result.stdout == "a\tb  \n\nhéllo ✓ \x1b[1mbold\x1b[0m"


def test_value_goes_on_its_own_line_after_unterminated_output() -> None:
    result = invoke("run", "-", stdin='print("a", end="")\n5\n')
    assert result.exit_code == 0
    assert result.stdout == "a\n5\n"


@pytest.mark.parametrize("code", ["x = 1\n", "None\n", "print('only')\n", ""])
def test_no_value_printed_without_a_last_expression_value(code: str) -> None:
    result = invoke("run", "-", stdin=code)
    assert result.exit_code == 0
    assert result.stdout == ("only\n" if "print" in code else "")


def test_value_is_the_repr() -> None:
    result = invoke("run", "-", stdin="'text'\n")
    assert result.stdout == "'text'\n"


def test_file_with_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.py"
    path.write_bytes(b"\xef\xbb\xbfprint('bom ok')\n")
    result = invoke("run", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == "bom ok\n"


def test_sys_exit_zero_is_success() -> None:
    result = invoke("run", "-", stdin="import sys\nprint('bye')\nsys.exit(0)\nprint('unreached')\n")
    assert result.exit_code == 0
    assert result.stdout == "bye\n"


def test_limit_options_are_accepted() -> None:
    result = invoke(
        "run",
        "-",
        "--timeout",
        "5",
        "--memory",
        "128MiB",
        "--fuel",
        "10000000000",
        "--max-output",
        "4096",
        stdin="sum(range(10))\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "45\n"


# ------------------------------------------------------------------ guest failures


def test_raising_program_exits_1_and_shows_the_exception(tmp_path: Path) -> None:
    result = invoke("run", write(tmp_path, 'print("before")\n1 / 0\n'))
    assert result.exit_code == 1
    assert result.stdout == "before\n"  # output produced before the error is kept
    err = plain(result.stderr)
    assert "ZeroDivisionError" in err
    assert "division by zero" in err
    assert "exception" in err  # the kind
    assert "Traceback (most recent call last)" in err
    assert "line 2" in err


def test_syntax_error_exits_1() -> None:
    result = invoke("run", "-", stdin="def f(:\n")
    assert result.exit_code == 1
    err = plain(result.stderr)
    assert "SyntaxError" in err
    assert "syntax" in err


def test_sys_exit_nonzero_exits_1() -> None:
    result = invoke("run", "-", stdin="import sys\nsys.exit(3)\n")
    assert result.exit_code == 1
    assert "SystemExit" in plain(result.stderr)


def test_timeout_exits_1_with_kind_timeout() -> None:
    result = invoke("run", "-", "--timeout", "0.5", stdin="import time\ntime.sleep(5)\n")
    assert result.exit_code == 1
    err = plain(result.stderr)
    assert "timeout" in err
    assert "TimeoutError" in err


def test_timeout_json_reports_kind_timeout() -> None:
    result = invoke("run", "-", "--timeout", "0.5", "--json", stdin="import time\ntime.sleep(5)\n")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["error"]["kind"] == "timeout"


def test_output_limit_exits_1() -> None:
    result = invoke("run", "-", "--max-output", "10", stdin='print("x" * 100)\n')
    assert result.exit_code == 1
    assert result.stdout == "x" * 10
    assert "output_limit" in plain(result.stderr)


def test_fuel_exhaustion_exits_1() -> None:
    result = invoke("run", "-", "--fuel", "100000000", stdin="while True:\n    pass\n")
    assert result.exit_code == 1
    assert "fuel" in plain(result.stderr)


def test_error_panel_neutralises_terminal_escapes_from_the_guest() -> None:
    code = 'raise ValueError("evil \\x1b[2J\\x1b]0;pwned\\x07 [bold]markup[/bold]")\n'
    result = invoke("run", "-", stdin=code)
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr
    assert "\x07" not in result.stderr
    err = plain(result.stderr)
    assert "\\x1b[2J" in err
    assert "[bold]markup[/bold]" in err  # shown literally, not interpreted as rich markup


# ------------------------------------------------------------------ --json


def test_json_success_has_ok_stdout_error() -> None:
    result = invoke("run", "-", "--json", stdin='print("hi")\n{"b": b"\\x00"}\n')
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["stdout"] == "hi\n"
    assert data["stderr"] == ""
    assert data["error"] is None
    assert data["value"] == "{'b': b'\\x00'}"
    assert data["files"] == {}
    assert set(data["stats"]) >= {"duration_s", "fuel_used"}


def test_json_failure_has_error_fields() -> None:
    result = invoke("run", "-", "--json", stdin="raise KeyError('k')\n")
    assert result.exit_code == 1
    assert result.stderr == ""  # everything is in the JSON
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["error"]["kind"] == "exception"
    assert data["error"]["type"] == "KeyError"
    assert data["error"]["lineno"] == 1
    assert "KeyError" in data["error"]["traceback"]


def test_json_matches_result_to_dict() -> None:
    code = "print(1)\n"
    result = invoke("run", "-", "--json", stdin=code)
    data = json.loads(result.stdout)
    expected = wasmrun.run(code).to_dict()
    for key in ("code", "stdout", "stderr", "value", "error", "exit_code", "files", "ok"):
        assert data[key] == expected[key]


# ------------------------------------------------------------------ usage errors (exit 2)


def assert_usage_error(result: typer.testing.Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    err = plain(result.stderr)
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--memory", "abc"], ["'--memory'", "'abc' is not a size"]),
        (["--memory", "12XB"], ["'--memory'", "unknown unit"]),
        (["--memory", "1K"], ["'--memory'", "memory_bytes"]),
        (["--memory", "100G"], ["'--memory'", "memory_bytes"]),
        (["--timeout", "-1"], ["'--timeout'", "timeout_s", "-1"]),
        (["--timeout", "0"], ["'--timeout'", "timeout_s"]),
        (["--timeout", "nan"], ["'--timeout'", "timeout_s"]),
        (["--timeout", "abc"], ["'--timeout'"]),
        (["--fuel", "0"], ["'--fuel'", "Limits.fuel"]),
        (["--fuel", "1.5"], ["'--fuel'"]),
        (["--max-output", "-5"], ["'--max-output'", "max_output_bytes"]),
    ],
)
def test_bad_option_values_exit_2_naming_the_option(args: list[str], needles: list[str]) -> None:
    assert_usage_error(invoke("run", "-", *args, stdin="print(1)\n"), "Invalid value", *needles)


def test_missing_file_exits_2(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.py")
    assert_usage_error(invoke("run", missing), "FILE", "does not exist")


def test_directory_exits_2(tmp_path: Path) -> None:
    assert_usage_error(invoke("run", str(tmp_path)), "FILE", "directory")


def test_non_utf8_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "latin1.py"
    path.write_bytes(b"print('caf\xe9')\n")
    assert_usage_error(invoke("run", str(path)), "FILE", "not UTF-8", "0xe9")


def test_missing_argument_exits_2() -> None:
    result = invoke("run")
    assert result.exit_code == 2
    assert "FILE" in plain(result.stderr)


def test_unknown_option_exits_2() -> None:
    assert invoke("run", "-", "--bogus", stdin="1\n").exit_code == 2


# ------------------------------------------------------------------ app-level


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"wasmrun {wasmrun.__version__}\n"


def test_no_args_shows_help_with_the_run_command() -> None:
    result = invoke()
    assert "run" in result.output
    assert "Usage" in result.output


def test_run_help() -> None:
    result = invoke("run", "--help")
    assert result.exit_code == 0
    out = plain(result.stdout)
    for option in ("--timeout", "--memory", "--fuel", "--max-output", "--json"):
        assert option in out


# ------------------------------------------------------------------ size parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("512B", 512),
        ("1K", 1024),
        ("1k", 1024),
        ("2KB", 2048),
        ("2KiB", 2048),
        ("256M", 256 * 1024**2),
        ("256mb", 256 * 1024**2),
        ("512MiB", 512 * 1024**2),
        ("1G", 1024**3),
        ("1GiB", 1024**3),
        ("1.5G", 3 * 512 * 1024**2),
        (".5K", 512),
        ("1.K", 1024),
        ("2T", 2 * 1024**4),
        ("  64 MiB \n", 64 * 1024**2),
    ],
)
def test_parse_size_accepts(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "abc",
        "M",
        "-1",
        "-1M",
        "1e9",
        "1.5",
        "0.1K",
        "1,024",
        "1_024",
        "1 M B",
        "1X",
        "1MiBs",
        "٣M",
        "1" * 31,
        "inf",
        "nan",
        "0x10",
    ],
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(SizeError):
        parse_size(text)


def test_size_error_is_a_value_error() -> None:
    assert issubclass(SizeError, ValueError)


@given(st.text())
def test_parse_size_never_raises_anything_else(text: str) -> None:
    try:
        size = parse_size(text)
    except SizeError:
        return
    assert isinstance(size, int)
    assert size >= 0


@given(st.from_regex(r"\s*[0-9]{0,12}(\.[0-9]{0,4})?\s*[kKmMgGtTbB]?[iI]?[bB]?\s*", fullmatch=True))
def test_parse_size_on_size_like_text(text: str) -> None:
    try:
        size = parse_size(text)
    except SizeError:
        return
    assert isinstance(size, int)


@given(
    st.integers(min_value=0, max_value=10**12),
    st.sampled_from([("", 1), ("B", 1), ("K", 1024), ("MiB", 1024**2), ("gb", 1024**3), ("T", 1024**4)]),
)
def test_parse_size_integer_round_trip(number: int, unit: tuple[str, int]) -> None:
    suffix, multiplier = unit
    assert parse_size(f"{number}{suffix}") == number * multiplier


@given(st.text())
def test_memory_option_errors_are_usage_errors(text: str) -> None:
    """Whatever --memory gets, the CLI answers with a result or exit 2, never a crash."""
    result = runner.invoke(app, ["run", "-", "--memory", text], input="")
    assert result.exit_code in (0, 2), (text, result.output)
    if result.exit_code == 2:
        assert "Traceback" not in result.output


def test_build_limits() -> None:
    limits = build_limits(timeout=2, memory=128 * 1024**2)
    assert limits.timeout_s == 2.0
    assert limits.memory_bytes == 128 * 1024**2
    assert limits.fuel == wasmrun.Limits().fuel
    with pytest.raises(typer.BadParameter, match="timeout_s") as info:
        build_limits(timeout=-1)
    assert info.value.param_hint == "'--timeout'"
    with pytest.raises(typer.BadParameter) as info:
        build_limits(max_output=0)
    assert info.value.param_hint == "'--max-output'"


# ------------------------------------------------------------------ real process


def _run_exe(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    env.pop("PYTHONIOENCODING", None)
    return subprocess.run([str(WASMRUN_EXE), *args], input=stdin, capture_output=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def exe() -> Path:
    if not WASMRUN_EXE.exists():
        pytest.skip(f"{WASMRUN_EXE} is not installed")
    return WASMRUN_EXE


@pytest.mark.usefixtures("exe")
def test_subprocess_stdin_success() -> None:
    proc = _run_exe("run", "-", stdin='import sys\nprint("héllo ✓")\nprint("warn", file=sys.stderr)\n6 * 7\n'.encode())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "héllo ✓\n42\n".encode()  # UTF-8 even under the C locale
    assert proc.stderr == b"warn\n"


@pytest.mark.usefixtures("exe")
def test_subprocess_failure_and_usage_exit_codes() -> None:
    proc = _run_exe("run", "-", stdin=b"raise RuntimeError('boom')\n")
    assert proc.returncode == 1
    assert b"RuntimeError" in proc.stderr
    assert b"boom" in proc.stderr

    proc = _run_exe("run", "-", "--memory", "abc", stdin=b"1\n")
    assert proc.returncode == 2
    assert b"--memory" in proc.stderr
    assert b"Traceback" not in proc.stderr


@pytest.mark.usefixtures("exe")
def test_subprocess_json_and_version() -> None:
    proc = _run_exe("run", "-", "--json", stdin=b"print(1)\n")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    assert data["stdout"] == "1\n"

    proc = _run_exe("--version", stdin=b"")
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == f"wasmrun {wasmrun.__version__}"
