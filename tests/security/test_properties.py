"""Property tests: arbitrary code, limits and tool payloads never crash, hang or corrupt the host.

Each property runs on both images with a small example budget (the scientific
image's runs cost ~20-50 ms each); the stateful test mixes fresh runs, session
calls, tool calls and changing limits in one long-lived sandbox and checks
after every step that the host is healthy.
"""

from __future__ import annotations

import json
import math
from typing import Any

from conftest import ERROR_KINDS, requires_scientific
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from wasmrun import Limits, Result, Sandbox, SessionDeadError, ToolRegistry

from .conftest import check_healthy

MiB = 1024 * 1024

PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,  # keep the checkout clean
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

#: Snippets that stress one limit each; combined with arbitrary limits below.
HOSTILE = [
    "while True: pass",
    "x = []\nwhile True: x.append(bytearray(10**6))",
    "while True: print('y' * 512)",
    "import time; time.sleep(30)",
    "def f(n): return f(n + 1)\nf(0)",
    "10**10**7",
    "import os; os._exit(7)",
    "raise SystemExit('bye')",
    "open('f.bin', 'wb').write(b'z' * 10**7)",
    "sum(range(10**5))",
]


def well_formed(result: Any, code: str) -> Result:
    assert isinstance(result, Result)
    assert result.code == code
    assert result.ok == (result.error is None)
    assert result.stats.duration_s >= 0 and result.stats.fuel_used >= 0
    if result.error is not None:
        assert result.error.kind in ERROR_KINDS
        assert result.error.type != "HostError", result.error  # a host function failed: a wasmrun bug
    return result


@PROPERTY_SETTINGS
@given(code=st.text(max_size=300))
def test_arbitrary_text_as_code(box: Sandbox, code: str) -> None:
    well_formed(box.run(code, limits=Limits(timeout_s=2)), code)


@PROPERTY_SETTINGS
@given(
    code=st.sampled_from(HOSTILE),
    limits=st.builds(
        Limits,
        timeout_s=st.floats(0.05, 1.5),
        fuel=st.integers(1, 10**10),
        memory_bytes=st.integers(64 * MiB, 320 * MiB),
        max_output_bytes=st.integers(1, 1 * MiB),
        recursion_limit=st.integers(50, 5000),
        max_value_chars=st.integers(1, 1000),
        max_scratch_bytes=st.integers(0, 8 * MiB),
    ),
)
def test_hostile_code_under_arbitrary_limits(box: Sandbox, code: str, limits: Limits) -> None:
    result = well_formed(box.run(code, limits=limits, files={"in.txt": "x"}), code)
    assert len(result.stdout.encode()) <= limits.max_output_bytes
    assert len(result.stderr.encode()) <= limits.max_output_bytes
    assert sum(len(d) for d in result.files.values()) <= limits.max_scratch_bytes
    if result.error is not None and result.error.kind == "fuel":
        assert result.stats.fuel_used == limits.fuel


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)

_echo_registry = ToolRegistry(max_argument_bytes=20_000)


@_echo_registry.tool
def echo(x: Any = None) -> Any:
    """Return the argument."""
    return x


def _same_json(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@PROPERTY_SETTINGS
@given(value=JSON)
def test_arbitrary_tool_payloads(image: str, value: Any) -> None:
    """Any JSON-like value either round-trips through a tool or is refused with a ToolError; never more."""
    sandbox = _tool_sandboxes.get(image) or _tool_sandboxes.setdefault(
        image, Sandbox(image=image, tools=_echo_registry, prewarm=0)
    )
    code = (
        "import tools, json\n"
        "try:\n"
        f"    print('ok', json.dumps(tools.echo(json.loads({json.dumps(value)!r}))))\n"
        "except tools.ToolError as exc:\n"
        "    print('refused', exc)\n"
    )
    result = well_formed(sandbox.run(code), code)
    assert result.ok, result.error
    status, _, payload = result.stdout.partition(" ")
    assert status in ("ok", "refused"), result.stdout
    if status == "ok":
        assert _same_json(json.loads(payload), json.loads(json.dumps(value))), (value, payload)


_tool_sandboxes: dict[str, Sandbox] = {}


# ----------------------------------------------------------------------------- stateful


class SandboxMachine(RuleBasedStateMachine):
    """Fresh runs, session calls, tool calls and changing limits interleaved in one sandbox."""

    image = "default"

    def __init__(self) -> None:
        super().__init__()
        registry = ToolRegistry(max_calls=50)

        @registry.tool
        def add(a: int, b: int) -> int:
            """Add."""
            return a + b

        self.sandbox = Sandbox(image=self.image, tools=registry, prewarm=1, limits=Limits(timeout_s=5))
        self.session: Any = None
        self.counter = 0  # the session's `n`, as far as the host knows

    @rule(code=st.sampled_from(HOSTILE), timeout=st.floats(0.05, 0.5))
    def hostile_run(self, code: str, timeout: float) -> None:
        well_formed(self.sandbox.run(code, limits=Limits(timeout_s=timeout, fuel=10**9)), code)

    @rule(a=st.integers(-(10**6), 10**6), b=st.integers(-(10**6), 10**6))
    def tool_call(self, a: int, b: int) -> None:
        result = self.sandbox.run(f"import tools\ntools.add({a}, {b})")
        assert result.ok and result.value == str(a + b), result.error

    @rule()
    def open_session(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session = self.sandbox.session(limits=Limits(timeout_s=5))
        assert self.session.run("n = 0").ok
        self.counter = 0

    @precondition(lambda self: self.session is not None)
    @rule(code=st.sampled_from([c for c in HOSTILE if "_exit" not in c]))  # os._exit traps, like a kill
    def session_call(self, code: str) -> None:
        try:
            result = self.session.run(f"n += 1\n{code}", limits=Limits(timeout_s=0.3, fuel=10**9))
        except SessionDeadError:
            self.session = None
            return
        well_formed(result, f"n += 1\n{code}")
        if result.ok or (result.error is not None and result.error.kind == "exception"):
            self.counter += 1  # a call that ended normally keeps its effects; a stopped one is rolled back

    @precondition(lambda self: self.session is not None)
    @rule()
    def session_state_is_consistent(self) -> None:
        try:
            result = self.session.run("n")
        except SessionDeadError:
            self.session = None
            return
        assert result.ok and result.value == str(self.counter), (result.error, result.value, self.counter)

    @invariant()
    def healthy(self) -> None:
        check_healthy(self.sandbox)

    def teardown(self) -> None:
        if self.session is not None:
            self.session.close()
        self.sandbox.close()


class ScientificSandboxMachine(SandboxMachine):
    image = "scientific"


_STATEFUL = settings(max_examples=4, stateful_step_count=8, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
test_stateful_default = SandboxMachine.TestCase
test_stateful_default.settings = _STATEFUL
test_stateful_scientific = requires_scientific(ScientificSandboxMachine.TestCase)
test_stateful_scientific.settings = _STATEFUL
