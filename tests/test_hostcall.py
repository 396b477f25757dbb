"""Host calls of the default image: the lean callbacks give exactly what wasmtime-py's generic ones give.

`wasmrun.images.default._fastcall` defines ``host.call``, ``host.output`` and every WASI function
with callbacks that read and write the C values directly and convert each function's types once;
``WASMRUN_NO_FASTCALL=1`` keeps wasmtime-py's generic callbacks. `tests/hostcall_cases.py` runs
programs that cross every kind of host call; here they run on both paths and must agree byte for
byte. Tool payloads with arbitrary text go through the lean path under hypothesis.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wasmrun
from wasmrun.images.default import _fastcall

sys.path.insert(0, str(Path(__file__).parent))
import hostcall_cases


@pytest.fixture(scope="module")
def lean() -> dict[str, Any]:
    assert _fastcall.enabled(), "the lean callbacks are available with this wasmtime-py"
    outcome = hostcall_cases.outcomes()
    assert _fastcall.defined() > 2, "WASI functions were defined with the lean callbacks too"
    result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(outcome))
    return result


@pytest.fixture(scope="module")
def generic() -> dict[str, Any]:
    env = {**os.environ, "WASMRUN_NO_FASTCALL": "1"}
    script = Path(__file__).parent / "hostcall_cases.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("case", sorted(hostcall_cases.CASES))
def test_lean_and_generic_callbacks_agree(lean: dict[str, Any], generic: dict[str, Any], case: str) -> None:
    assert lean[case] == generic[case]


def test_cases_do_what_they_say(lean: dict[str, Any]) -> None:
    """The comparison above is only worth something if the cases really cross the boundary."""
    assert lean["print"]["stdout"] == "hello wörld\n\n"
    assert lean["print"]["stderr"] == "err \U0001f600\n"
    assert lean["tool-echo"]["value"] == repr([True] * len(hostcall_cases.ODD_STRINGS))
    assert [c[5] for c in lean["tool-echo"]["tool_calls"]] == hostcall_cases.ODD_STRINGS
    assert lean["tool-none"]["value"] == "[None, None, None]"
    assert lean["tool-add"]["value"] == "(5, 0)"
    assert "invalid arguments" in lean["tool-invalid"]["stdout"]
    assert lean["tool-fails"]["stdout"] == "fail: ValueError: no é\n"
    assert lean["tool-unknown"]["stdout"].startswith("Err no tool named 'nope'")
    assert "not a JSON object" in lean["tool-bad-json"]["stdout"]
    assert lean["files"]["files"]["out.txt"]
    assert lean["raw-write"]["stdout"] == bytes(range(32, 127)).decode()
    assert lean["stdin"]["stdout"] == "eof\n"
    assert lean["exit"]["error"][0] == "exception" and "exited" in lean["exit"]["error"][1]
    assert lean["no-network"]["stdout"] == "PermissionError\n"
    assert lean["clocks"]["value"] == "(True, True)"
    assert len(ast.literal_eval(lean["random"]["value"])[0]) == 1200
    assert lean["output-cap"]["error"][0] == "output_limit"


@pytest.fixture(scope="module")
def echo_sandbox() -> Any:
    with wasmrun.Sandbox(tools=hostcall_cases.registry(), executor="inline", prewarm=0) as sb:
        yield sb


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=300), min_size=1, max_size=5))
def test_tool_payloads_round_trip_exactly(echo_sandbox: wasmrun.Sandbox, texts: list[str]) -> None:
    """Any text a guest sends comes back unchanged, and the record holds it (lone surrogates are refused)."""
    code = (
        f"import tools\nout = []\nfor s in {texts!r}:\n    try:\n        out.append(tools.echo(s))\n"
        "    except tools.ToolError as e:\n        out.append(('refused', str(e)))\nout"
    )
    result = echo_sandbox.run(code)
    assert result.ok, result.error
    expected = [
        s if not any(0xD800 <= ord(c) <= 0xDFFF for c in s) else None for s in texts
    ]
    got = ast.literal_eval(result.value)
    for want, have in zip(expected, got, strict=True):
        if want is None:
            assert have[0] == "refused" and "surrogate" in have[1]
        else:
            assert have == want
    assert [c.result for c in result.tool_calls if c.outcome == "ok"] == [s for s in expected if s is not None]
