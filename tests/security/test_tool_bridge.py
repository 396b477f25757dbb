"""The tool bridge: whatever the guest sends, the host validates it and stays in charge.

Every case runs on both images with one registry: a policy that denies
``secret_*`` tools, a budget, and tools that echo, raise or re-enter the sandbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from wasmrun import Limits, Sandbox, ToolCall, ToolRegistry

from .conftest import check_healthy


def _policy(call: ToolCall) -> str | None:
    return "secret tools are off limits" if call.tool.startswith("secret_") else None


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    reg = ToolRegistry(policy=_policy, max_argument_bytes=10_000, max_result_bytes=10_000)
    calls: list[str] = []

    @reg.tool
    def echo(x: Any = None) -> Any:
        """Return the argument."""
        calls.append("echo")
        return x

    @reg.tool
    def add(a: int, b: int) -> int:
        """Add two ints."""
        return a + b

    @reg.tool
    def secret_delete(path: str) -> str:
        """Must never run."""
        calls.append("secret_delete")
        return "deleted"

    @reg.tool
    def reenter() -> str:
        """Try to start a run from inside a tool."""
        return Sandbox(prewarm=0).run("1").value or ""

    @reg.tool(timeout_s=0.3)
    def hang() -> str:
        """Never return in time."""
        import time

        time.sleep(5)
        return "late"

    reg.calls = calls  # type: ignore[attr-defined]
    return reg


@pytest.fixture(scope="module")
def tool_boxes(registry: ToolRegistry) -> Iterator[dict[str, Sandbox]]:
    made: dict[str, Sandbox] = {}
    yield made
    for box in made.values():
        box.close()


@pytest.fixture
def tbox(image: str, registry: ToolRegistry, tool_boxes: dict[str, Sandbox]) -> Sandbox:
    if image not in tool_boxes:
        tool_boxes[image] = Sandbox(image=image, tools=registry, limits=Limits(timeout_s=10))
    return tool_boxes[image]


def guarded(call: str) -> str:
    """Guest code that prints the outcome of one tool call: its value or ``ToolError: message``."""
    return (
        f"import tools\ntry:\n    print(repr({call}))\nexcept tools.ToolError as exc:\n    print('ToolError:', exc)\n"
    )


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("tools.add(1, 2)", "3"),
        ("tools.add([1], 2)", "ToolError: add: invalid arguments"),
        ("tools.add(1)", "TypeError"),  # the stub checks the signature before anything is sent
        ("tools.echo('x' * 20000)", "ToolError: echo: arguments are"),
        ("tools.echo(__import__('functools').reduce(lambda a, _: [a], range(400), []))", "ToolError: echo: "),
        ("tools.echo('\\ud800')", "ToolError: echo: "),
        ("tools.echo(float('nan'))", "ToolError: echo: "),
        ("tools.secret_delete('/')", "ToolError: secret_delete: denied: secret tools are off limits"),
        ("tools.reenter()", "ToolError: reenter: "),
        ("tools.hang()", "ToolError: hang: timed out after 0.3s"),
    ],
    ids=[
        "ok",
        "wrong-type",
        "missing-arg",
        "oversized",
        "deep-nesting",
        "lone-surrogate",
        "nan",
        "policy",
        "reentrancy",
        "hang",
    ],
)
def test_tool_calls_are_validated(tbox: Sandbox, registry: ToolRegistry, call: str, expected: str | None) -> None:
    result = tbox.run(guarded(call))
    if expected == "TypeError":
        assert result.error is not None and result.error.type == "TypeError"
    else:
        assert result.ok, result.error
        if expected is not None:
            assert result.stdout.startswith(expected), result.stdout
    assert "secret_delete" not in registry.calls  # type: ignore[attr-defined]
    check_healthy(tbox)


def test_unknown_tool_through_the_raw_door(tbox: Sandbox, image: str, registry: ToolRegistry) -> None:
    """Skipping the `tools` stub and calling the host import directly meets the same pipeline."""
    if image == "default":
        code = (
            "from wit_world.imports import host\n"
            "out = []\n"
            "for name, args in [('nope', '{}'), ('secret_delete', '{\"path\": \"/\"}'), ('add', '{\"a\": 1}'),\n"
            "                   ('add', 'not json'), ('add', '{\"a\": 1, \"b\": 2, \"c\": 3}'),\n"
            "                   ('echo', '{\"x\": \"\\\\ud800\"}')]:\n"
            "    try:\n"
            "        out.append(('ok', host.call(name, args)))\n"
            "    except Exception as exc:\n"
            "        out.append(('err', str(exc.args[0] if exc.args else exc)[:80]))\n"
            "print(out)"
        )
    else:
        code = (
            "import _host\n"
            "out = []\n"
            "for name, args in [('nope', '{}'), ('secret_delete', '{\"path\": \"/\"}'), ('add', '{\"a\": 1}'),\n"
            "                   ('add', 'not json'), ('add', '{\"a\": 1, \"b\": 2, \"c\": 3}'),\n"
            "                   ('echo', '{\"x\": \"\\\\ud800\"}')]:\n"
            '    frame = (\'{"op": "call", "name": "%s"}\\n%s\' % (name, args)).encode()\n'
            "    reply = _host.call(frame)\n"
            "    out.append(('ok' if reply[:1] == b'1' else 'err', reply[1:81].decode()))\n"
            "print(out)"
        )
    result = tbox.run(code)
    assert result.ok, result.error
    outcomes = eval(result.stdout)
    assert [kind for kind, _ in outcomes] == ["err"] * 6, outcomes
    assert "secret_delete" not in registry.calls  # type: ignore[attr-defined]
    assert [r.outcome for r in result.tool_calls] == ["invalid", "denied", "invalid", "invalid", "invalid", "invalid"]
    assert "surrogates" in outcomes[-1][1]  # an escaped lone surrogate in the arguments: refused by validation


def test_tool_calls_after_the_deadline_are_refused(tbox: Sandbox, registry: ToolRegistry) -> None:
    # Past the call budget the calls are refused (ToolError, caught); the deadline still ends the run.
    code = "import tools\nwhile True:\n    try:\n        tools.echo(1)\n    except tools.ToolError:\n        pass"
    result = tbox.run(code, limits=Limits(timeout_s=0.5))
    assert result.error is not None and result.error.kind == "timeout"
    check_healthy(tbox)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError, RecursionError])
def test_tool_raising_any_exception_becomes_a_tool_error(image: str, exc: type[BaseException]) -> None:
    reg = ToolRegistry()

    @reg.tool
    def boom() -> int:
        """Raise."""
        raise exc("from the host")

    with Sandbox(image=image, tools=reg, prewarm=0) as box:
        result = box.run(guarded("tools.boom()"))
        assert result.ok, result.error
        assert result.stdout.startswith("ToolError: boom: "), result.stdout
        (record,) = result.tool_calls
        assert record.outcome == "error"
        check_healthy(box)
