"""``wasmrun repl``: an interactive session in the terminal (driven through stdin here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from wasmrun.cli import app

runner = CliRunner()


def repl(stdin: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["repl", *args], input=stdin)
    # rich wraps long messages on stderr: compare them with whitespace collapsed
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def test_state_persists_and_blocks_need_an_empty_line() -> None:
    code, out, err = repl("x = 20\ndef f(y):\n    return x + y\n\nf(22)\nprint('hi')\n")
    assert code == 0, err
    assert "42\n" in out and "hi\n" in out
    assert "... " in out  # the block asked for more lines
    assert "repl" in err


def test_errors_are_shown_and_the_session_goes_on() -> None:
    code, out, err = repl("1/0\nz = 5\nwhile True: pass\n\nz\n", "--timeout", "0.5")
    assert code == 0
    assert "ZeroDivisionError" in err
    assert "rolled back" in err
    assert ">>> 5\n" in out  # z survived the rolled-back input


def test_commands_reset_save_and_restore(tmp_path: Path) -> None:
    saved = tmp_path / "s.snapshot"
    code, out, err = repl(f"kept = 'yes'\n:save {saved}\n:reset\n'kept' in globals()\n:nope\n:quit\n")
    assert code == 0, err
    assert "False\n" in out
    assert "saved" in err and "unknown command" in err
    code, out, err = repl("kept\n", "--restore", str(saved))
    assert code == 0, err
    assert "'yes'\n" in out


def test_bad_options_and_bad_snapshots_are_usage_errors(tmp_path: Path) -> None:
    code, _, err = repl("", "--timeout", "-1")
    assert code == 2
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"not a snapshot")
    code, _, err = repl("", "--restore", str(bogus))
    assert code == 2 and "not a wasmrun session snapshot" in err
    code, _, err = repl("", "--restore", str(tmp_path / "missing"))
    assert code == 2 and "cannot read" in err


def test_repl_as_a_process_reads_a_piped_session() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from wasmrun.cli import app; app()", "repl"],
        input="import math\nmath.factorial(5)\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "120\n" in proc.stdout
