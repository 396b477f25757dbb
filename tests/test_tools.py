"""The tool bridge: `import tools` in the guest, `ToolRegistry.call` for models, one pipeline behind both.

Every test asserts what the guest (or the model's caller) actually observes:
values that round-trip, `tools.ToolError` messages, denials, budgets, timeouts,
audit records. Failure modes end with a good program run, to prove the host
process and the shared runtime survived.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wasmrun
from wasmrun import (
    AuditLog,
    Limits,
    ReentrancyError,
    Result,
    RunContext,
    Sandbox,
    ToolCall,
    ToolCallRecord,
    ToolError,
    ToolRegistry,
)

OUTCOMES = {"ok", "error", "denied", "invalid", "timeout"}
DECISIONS = {"allowed", "denied", "invalid"}

GUEST_FUZZ = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
HOST_FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


# ---------------------------------------------------------------------------
# The tools most tests use
# ---------------------------------------------------------------------------


class Item(pydantic.BaseModel):
    name: str
    qty: int = 1


class Order(pydantic.BaseModel):
    customer: str
    items: list[Item]
    note: str | None = None


@dataclasses.dataclass
class Receipt:
    order_id: int
    customer: str
    lines: list[Item]
    placed_at: datetime.datetime
    totals: dict[str, float]


class CustomBase(BaseException):
    """Not an Exception: handlers may raise anything."""


FAILURES: dict[str, Callable[[], BaseException]] = {
    "keyboard": lambda: KeyboardInterrupt("ctrl-c in a handler"),
    "exit": lambda: SystemExit(3),
    "base": lambda: CustomBase("custom base exception"),
    "value": lambda: ValueError("bad value 42"),
    "tool": lambda: ToolError("no such row"),
}

ORDER = {"customer": "ada", "items": [{"name": "tea", "qty": 2}, {"name": "cake"}]}


def build_registry(**options: Any) -> ToolRegistry:
    reg = ToolRegistry(max_argument_bytes=100_000, max_result_bytes=100_000, **options)

    @reg.tool
    def add(a: int, b: int = 1) -> int:
        """Add two numbers.

        Args:
            a: The first number.
            b: The second number.
        """
        return a + b

    @reg.tool
    def place_order(order: Order, express: bool = False) -> Receipt:
        """Place an order and return its receipt."""
        return Receipt(
            order_id=7 if express else 8,
            customer=order.customer,
            lines=order.items,
            placed_at=datetime.datetime(2024, 1, 2, 3, 4, 5),
            totals={item.name: item.qty * 1.5 for item in order.items},
        )

    @reg.tool
    def get_order(customer: str) -> Order:
        """Look up the open order of a customer."""
        return Order(customer=customer, items=[Item(name="tea", qty=3)])

    @reg.tool
    def echo(x: Any = None) -> Any:
        """Return the argument unchanged."""
        return x

    @reg.tool
    def lookup(key: str) -> dict[str, list[int]]:
        return {key: [1, 2, 3], "other": []}

    @reg.tool
    def pair() -> tuple[int, str]:
        return (1, "one")

    @reg.tool
    def nothing() -> None:
        return None

    @reg.tool
    def flags(a: int, *, flag: bool = False) -> list[Any]:
        """Keyword-only flag."""
        return [a, flag]

    @reg.tool
    def when(day: datetime.date = datetime.date(2020, 1, 2)) -> str:
        """A default that JSON cannot carry."""
        return day.isoformat()

    @reg.tool
    def fail(kind: str) -> int:
        """Raise whatever `kind` names."""
        raise FAILURES[kind]()

    @reg.tool
    def bad_return() -> int:
        return "not a number"  # type: ignore[return-value]

    @reg.tool
    def big_result(n: int) -> str:
        return "x" * n

    @reg.tool(timeout_s=0.2)
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @reg.tool
    async def double(x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x

    @reg.tool
    async def async_fail(message: str) -> int:
        await asyncio.sleep(0)
        raise ToolError(message)

    return reg


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return build_registry()


@pytest.fixture(scope="module")
def tsb(registry: ToolRegistry) -> Iterator[Sandbox]:
    with Sandbox(tools=registry, limits=Limits(timeout_s=10), prewarm=2) as sb:
        warm = sb.run("import tools\ntools.add(1)")
        assert warm.ok, warm.error
        yield sb


def last_json(result: Result) -> Any:
    """The guest prints one JSON document on its last line of stdout."""
    assert result.ok, result.error
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output; error={result.error}"
    return json.loads(lines[-1])


def check_record(record: Any) -> ToolCallRecord:
    assert isinstance(record, ToolCallRecord)
    assert record.outcome in OUTCOMES
    assert record.decision in DECISIONS
    assert record.duration_s >= 0
    if record.outcome == "ok":
        assert record.error is None
        assert record.decision == "allowed"
    else:
        assert isinstance(record.error, str) and record.error
    if record.outcome in ("denied", "invalid"):
        assert record.decision == record.outcome
    return record


def contains_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return any(contains_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(contains_surrogate(k) or contains_surrogate(v) for k, v in value.items())
    return False


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


# ---------------------------------------------------------------------------
# Good calls: arguments in, values out
# ---------------------------------------------------------------------------


def test_positional_and_keyword_arguments(tsb: Sandbox) -> None:
    result = tsb.run("import tools, json\nprint(json.dumps([tools.add(2, 3), tools.add(a=2, b=5), tools.add(4, b=6)]))")
    assert last_json(result) == [5, 7, 10]
    assert [r.arguments for r in result.tool_calls] == [{"a": 2, "b": 3}, {"a": 2, "b": 5}, {"a": 4, "b": 6}]
    assert all(r.outcome == "ok" and r.source == "guest" for r in result.tool_calls)
    assert result.stats.tool_calls == 3


def test_defaults_are_applied_on_the_host(tsb: Sandbox) -> None:
    result = tsb.run("import tools\ntools.add(41)")
    assert result.ok, result.error
    assert result.value == "42"
    (record,) = result.tool_calls
    assert record.arguments == {"a": 41, "b": 1}  # the validated arguments, default included
    assert record.result == 42


def test_default_that_json_cannot_carry(tsb: Sandbox) -> None:
    result = tsb.run("import tools\nhelp(tools.when)\nprint(tools.when(), tools.when('2021-05-06'))")
    assert result.ok, result.error
    assert "datetime.date(2020, 1, 2)" in result.stdout  # shown by repr in help()
    assert result.stdout.strip().splitlines()[-1] == "2020-01-02 2021-05-06"


def test_keyword_only_parameter(tsb: Sandbox) -> None:
    result = tsb.run("import tools, json\nprint(json.dumps([tools.flags(1), tools.flags(2, flag=True)]))")
    assert last_json(result) == [[1, False], [2, True]]
    result = tsb.run("import tools\ntools.flags(1, True)")
    assert result.error is not None and result.error.type == "TypeError"
    assert result.tool_calls == ()


def test_nested_model_argument_and_dataclass_return(tsb: Sandbox) -> None:
    code = (
        f"import tools, json\nr = tools.place_order({ORDER!r}, express=True)\n"
        "print(type(r).__name__)\nprint(json.dumps(r))"
    )
    result = tsb.run(code)
    assert result.stdout.splitlines()[0] == "dict"
    assert last_json(result) == {
        "order_id": 7,
        "customer": "ada",
        "lines": [{"name": "tea", "qty": 2}, {"name": "cake", "qty": 1}],  # nested default filled in
        "placed_at": "2024-01-02T03:04:05",
        "totals": {"tea": 3.0, "cake": 1.5},
    }
    (record,) = result.tool_calls
    assert record.arguments == {
        "order": {"customer": "ada", "items": [{"name": "tea", "qty": 2}, {"name": "cake", "qty": 1}], "note": None},
        "express": True,
    }


def test_pydantic_model_return(tsb: Sandbox) -> None:
    result = tsb.run("import tools, json\nprint(json.dumps(tools.get_order('bob')))")
    assert last_json(result) == {"customer": "bob", "items": [{"name": "tea", "qty": 3}], "note": None}


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("tools.lookup('k')", {"k": [1, 2, 3], "other": []}),
        ("tools.pair()", [1, "one"]),
        ("tools.nothing()", None),
        (
            "tools.echo({'a': [1, 2.5, None, True, 'x'], 'b': {'c': {}}})",
            {"a": [1, 2.5, None, True, "x"], "b": {"c": {}}},
        ),
        ("tools.echo((1, 2))", [1, 2]),
        ("tools.echo({1: 'int key'})", {"1": "int key"}),
        ("tools.echo('héllo ✓ 🐍')", "héllo ✓ 🐍"),
        ("tools.echo(2**100)", 2**100),
        ("tools.double(21)", 42),
    ],
)
def test_return_values_round_trip(tsb: Sandbox, call: str, expected: Any) -> None:
    result = tsb.run(f"import tools, json\nprint(json.dumps({call}))")
    assert last_json(result) == expected


def test_help_shows_signature_and_docstring(tsb: Sandbox) -> None:
    result = tsb.run("import tools, inspect\nhelp(tools.add)\nprint(inspect.signature(tools.flags))\nhelp(tools)")
    assert result.ok, result.error
    assert "add(a: int, b: int = 1)" in result.stdout
    assert "Add two numbers." in result.stdout
    assert "The second number." in result.stdout
    assert "(a: int, *, flag: bool = False)" in result.stdout
    # help(tools) lists every tool
    for name in ("add", "place_order", "echo", "flags", "double"):
        assert name in result.stdout


def test_tool_error_is_a_catchable_exception(tsb: Sandbox) -> None:
    code = (
        "import tools, json\n"
        "out = [issubclass(tools.ToolError, Exception), tools.ToolError.__name__]\n"
        "try:\n    tools.fail('tool')\nexcept Exception as e:\n    out += [type(e) is tools.ToolError, str(e)]\n"
        "print(json.dumps(out))"
    )
    flag, name, caught, message = last_json(tsb.run(code))
    assert flag is True and name == "ToolError" and caught is True
    assert message.endswith("no such row")


def test_uncaught_tool_error_is_error_kind_tool(tsb: Sandbox, assert_alive) -> None:
    result = tsb.run("import tools\nx = 1\ntools.fail('tool')\nprint('unreachable')")
    assert result.error is not None
    assert result.error.kind == "tool"
    assert result.error.type == "ToolError"
    assert "no such row" in result.error.message
    assert result.error.lineno == 3
    assert "unreachable" not in result.stdout
    assert_alive()


def test_tool_error_message_is_sent_exactly(tsb: Sandbox) -> None:
    result = tsb.run("import tools\ntools.fail('tool')")
    assert result.error is not None and result.error.message == "no such row"


# ---------------------------------------------------------------------------
# Calls refused in the guest, before any host call
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        ("tools.add(1, 2, 3)", "positional argument"),
        ("tools.add()", "missing"),
        ("tools.add(1, c=2)", "unexpected keyword argument"),
        ("tools.add(1, a=2)", "multiple values"),
    ],
)
def test_wrong_arity_is_a_type_error_before_any_host_call(tsb: Sandbox, call: str, fragment: str) -> None:
    result = tsb.run(f"import tools\n{call}")
    assert result.error is not None
    assert result.error.type == "TypeError"
    assert result.error.message.startswith("add()")
    assert fragment in result.error.message
    assert result.tool_calls == ()
    assert result.stats.tool_calls == 0


@pytest.mark.parametrize("value", ["object()", "float('nan')", "float('inf')", "{1, 2}", "b'bytes'", "10**5000"])
def test_arguments_that_are_not_json_are_refused_in_the_guest(tsb: Sandbox, value: str) -> None:
    result = tsb.run(f"import tools\ntools.echo({value})")
    assert result.error is not None
    assert result.error.kind == "tool"
    assert "not JSON-serialisable" in result.error.message
    assert result.tool_calls == ()


def test_unknown_tool_name(tsb: Sandbox, registry: ToolRegistry) -> None:
    result = tsb.run("import tools\ntools.no_such_tool()")
    assert result.error is not None and result.error.type == "AttributeError"
    assert result.tool_calls == ()

    record = check_record(registry.call("no_such_tool", "{}"))
    assert record.outcome == "invalid"
    assert "no tool named 'no_such_tool'" in record.error
    assert "add" in record.error  # lists what is available


def test_raw_host_call_is_validated_too(tsb: Sandbox) -> None:
    """Guest code can bypass the `tools` stubs and call the host import directly."""
    code = (
        "import json\n"
        "from wit_world.imports import host\n"
        "out = []\n"
        "for name, args in [('nope', '{}'), ('add', 'not json'), ('add', '[1, 2]'), ('add', '{\"a\": 1, \"zz\": 2}'),\n"
        "                   ('add', '{\"a\": \"x\"}'), ('add', '{\"a\": 1}')]:\n"
        "    try:\n"
        "        out.append(['ok', host.call(name, args)])\n"
        "    except Exception as e:\n"
        "        out.append(['err', str(getattr(e, 'value', e))])\n"
        "print(json.dumps(out))"
    )
    result = tsb.run(code)
    out = last_json(result)
    assert out[0][0] == "err" and "no tool named 'nope'" in out[0][1]
    assert out[1][0] == "err" and "not a JSON object" in out[1][1]
    assert out[2][0] == "err" and "not a JSON object" in out[2][1]
    assert out[3][0] == "err" and "zz" in out[3][1]
    assert out[4][0] == "err" and "a: " in out[4][1]
    assert out[5] == ["ok", "2"]
    assert [r.outcome for r in result.tool_calls] == ["invalid"] * 5 + ["ok"]


def test_sandbox_without_tools() -> None:
    with Sandbox(prewarm=0) as sb:
        code = (
            "import tools, json\nfrom wit_world.imports import host\n"
            "try:\n    host.call('x', '{}')\nexcept Exception as e:\n    msg = str(e.value)\n"
            "print(json.dumps([tools.__all__, msg]))"
        )
        names, message = last_json(sb.run(code))
    assert names == []
    assert "no tools registered" in message


# ---------------------------------------------------------------------------
# Bad arguments: a ToolError that names the argument, never a host exception
# ---------------------------------------------------------------------------


def test_invalid_nested_field_names_its_path(tsb: Sandbox) -> None:
    bad = {"customer": "ada", "items": [{"name": "tea", "qty": 1}, {"name": "cake", "qty": "many"}]}
    code = f"import tools\ntry:\n    tools.place_order({bad!r})\nexcept tools.ToolError as e:\n    print(e)"
    result = tsb.run(code)
    assert result.ok, result.error
    assert "place_order: invalid arguments" in result.stdout
    assert "order.items.1.qty" in result.stdout
    (record,) = result.tool_calls
    assert record.outcome == "invalid" and record.decision == "invalid"
    assert "order.items.1.qty" in record.error


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ('{"order": {"customer": "a", "items": [{"qty": 1}]}}', "order.items.0.name"),
        ('{"order": {"customer": "a", "items": [{"name": "x", "qty": -0.5}]}}', "order.items.0.qty"),
        ('{"order": {"customer": 5, "items": []}}', "order.customer"),
        ('{"order": {"customer": "a", "items": "nope"}}', "order.items"),
        ('{"order": {"customer": "a", "items": []}, "express": "very"}', "express"),
        ('{"order": {"customer": "a", "items": []}, "surprise": 1}', "surprise"),
        ("{}", "order"),
        ("[]", "not a JSON object"),
        ("null", "not a JSON object"),
        ('{"order": ', "not a JSON object"),
        ("", "not a JSON object"),
    ],
)
def test_model_call_with_bad_arguments(registry: ToolRegistry, payload: str, fragment: str) -> None:
    record = check_record(registry.call("place_order", payload))
    assert record.outcome == "invalid"
    assert record.source == "model"
    assert fragment in record.error
    assert record.arguments == payload  # the raw payload, as received


def test_model_call_with_good_arguments(registry: ToolRegistry) -> None:
    record = check_record(registry.call("place_order", json.dumps({"order": ORDER})))
    assert record.outcome == "ok"
    assert record.result["lines"] == [{"name": "tea", "qty": 2}, {"name": "cake", "qty": 1}]
    assert record.arguments["express"] is False
    # bytes and an already-decoded mapping work the same way
    assert registry.call("add", b'{"a": 1, "b": 2}').result == 3
    assert registry.call("add", {"a": 5}).result == 6


def test_null_for_optional_parameter_means_default(registry: ToolRegistry) -> None:
    """Strict schemas make optional parameters nullable: a model sends null for "use the default"."""
    record = check_record(registry.call("add", '{"a": 1, "b": null}'))
    assert record.outcome == "ok" and record.result == 2
    record = check_record(registry.call("place_order", json.dumps({"order": {**ORDER, "note": None}, "express": None})))
    assert record.outcome == "ok" and record.result["order_id"] == 8


def test_huge_arguments(tsb: Sandbox, registry: ToolRegistry) -> None:
    record = check_record(registry.call("echo", json.dumps({"x": "y" * 200_000})))
    assert record.outcome == "invalid"
    assert "limit" in record.error
    assert len(record.arguments) <= 2_000  # only a preview is kept

    result = tsb.run("import tools\ntry:\n    tools.echo('y' * 2_000_000)\nexcept tools.ToolError as e:\n    print(e)")
    assert result.ok, result.error
    assert "bytes; the limit is 100,000" in result.stdout


def test_huge_result(tsb: Sandbox) -> None:
    result = tsb.run("import tools\nprint(len(tools.big_result(1000)))\ntools.big_result(500_000)")
    assert result.stdout == "1000\n"
    assert result.error is not None and result.error.kind == "tool"
    assert "limit is 100,000" in result.error.message


def test_result_that_does_not_match_its_annotation(tsb: Sandbox) -> None:
    result = tsb.run("import tools\ntools.bad_return()")
    assert result.error is not None and result.error.kind == "tool"
    assert "does not match its annotation" in result.error.message
    (record,) = result.tool_calls
    assert record.outcome == "error"


def test_argument_limit_counts_bytes() -> None:
    reg = ToolRegistry(max_argument_bytes=1_000)

    @reg.tool
    def echo(x: str) -> int:
        return len(x.encode())

    payload = json.dumps({"x": "€" * 400}, ensure_ascii=False)  # 413 characters, 1213 bytes
    assert len(payload.encode()) > 1_000
    assert reg.call("echo", payload).outcome == "invalid"


# -- deep nesting -------------------------------------------------------------


@pytest.mark.parametrize(
    "depth",
    [10, 200, 300, 600, 5_000, 100_000],
)
def test_deeply_nested_model_payload(depth: int) -> None:
    reg = ToolRegistry(max_argument_bytes=10_000_000)

    @reg.tool
    def echo(x: Any) -> Any:
        return x

    payload = '{"x": ' + "[" * depth + "]" * depth + "}"
    record = check_record(reg.call("echo", payload))
    if record.outcome == "ok":
        assert record.result == nested(depth)
    else:
        assert record.outcome == "invalid"
        assert "nested too deeply" in record.error


@pytest.mark.parametrize("depth", [50, 400, 5_000])
def test_deeply_nested_guest_payload(tsb: Sandbox, assert_alive, depth: int) -> None:
    code = (
        f"import tools\nx = []\nfor _ in range({depth - 1}):\n    x = [x]\n"
        "try:\n    tools.echo(x)\n    print('ok')\nexcept tools.ToolError as e:\n    print('ToolError', e)"
    )
    result = tsb.run(code)
    assert result.ok, result.error
    assert result.stdout.startswith(("ok", "ToolError"))
    assert len(result.tool_calls) == 1
    assert_alive()


# -- lone surrogates ------------------------------------------------------------


def test_escaped_lone_surrogate_is_a_clean_error(registry: ToolRegistry, tsb: Sandbox) -> None:
    record = check_record(registry.call("echo", '{"x": "a\\ud800b"}'))
    assert record.outcome in ("ok", "invalid")
    result = tsb.run(
        "import tools\ntry:\n    tools.echo('a\\ud800b')\nexcept tools.ToolError as e:\n    print('ToolError')"
    )
    assert result.ok, result.error
    assert result.stdout == "ToolError\n"


def test_raw_lone_surrogate_in_model_payload(registry: ToolRegistry) -> None:
    record = check_record(registry.call("echo", '{"x": "a\ud800b"}'))
    assert record.outcome in ("ok", "invalid")


def test_lone_surrogate_in_decoded_mapping(registry: ToolRegistry) -> None:
    arguments = json.loads('{"x": "a\\ud800b"}')
    record = check_record(registry.call("echo", arguments))
    assert record.outcome in ("ok", "invalid")


def test_handler_error_with_lone_surrogate_without_audit(tsb: Sandbox) -> None:
    reg = ToolRegistry()

    @reg.tool
    def listdir() -> list[str]:
        raise FileNotFoundError("no such file: 'caf\udce9'")  # os.fsdecode() of a latin-1 name

    with Sandbox(tools=reg, prewarm=0) as sb:
        result = sb.run("import tools\ntry:\n    tools.listdir()\nexcept tools.ToolError as e:\n    print('caught', e)")
    assert result.ok, result.error
    assert result.stdout.startswith("caught listdir: FileNotFoundError: no such file")


def test_handler_error_with_lone_surrogate_is_audited(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    reg = ToolRegistry(audit=log)

    @reg.tool
    def listdir() -> list[str]:
        raise FileNotFoundError("no such file: 'caf\udce9'")

    with Sandbox(tools=reg, prewarm=0) as sb:
        result = sb.run("import tools\ntry:\n    tools.listdir()\nexcept tools.ToolError as e:\n    print('caught')")
    assert result.ok, result.error
    assert result.stdout == "caught\n"
    assert [r["outcome"] for r in AuditLog(log).read()] == ["error"]


# -- property tests ---------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
# Text that may hold lone surrogates, in values and keys.
wild_text = st.text(st.characters(categories=["L", "N", "P", "S", "Zs", "Cc", "Cs"]), max_size=12)
wild_values = st.recursive(
    json_scalars | wild_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(wild_text, children, max_size=4),
    max_leaves=20,
)


@HOST_FUZZ
@given(value=wild_values, ascii_only=st.booleans(), wrap=st.booleans())
def test_property_model_calls_never_raise(registry: ToolRegistry, value: Any, ascii_only: bool, wrap: bool) -> None:
    payload = {"x": value} if wrap else value
    if not ascii_only and contains_surrogate(payload):
        ascii_only = True  # raw lone surrogates: see test_raw_lone_surrogate_in_model_payload
    text = json.dumps(payload, ensure_ascii=ascii_only)
    for tool in ("echo", "add", "place_order"):
        record = check_record(registry.call(tool, text))
        assert record.source == "model"
        assert record.tool == tool
        if tool == "echo" and wrap and not contains_surrogate(value):
            assert record.outcome == "ok", record.error
            assert record.result == value
        if record.outcome == "invalid":
            assert record.error.startswith(f"{tool}: ")


@HOST_FUZZ
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_property_garbage_model_payloads(registry: ToolRegistry, text: str | bytes) -> None:
    for tool in ("echo", "place_order", "missing"):
        record = check_record(registry.call(tool, text))
        assert record.outcome in ("ok", "invalid")


@HOST_FUZZ
@given(order=json_values, express=json_values)
def test_property_wrong_types_name_the_argument(registry: ToolRegistry, order: Any, express: Any) -> None:
    record = check_record(registry.call("place_order", json.dumps({"order": order, "express": express})))
    assert record.outcome in ("ok", "invalid")
    if record.outcome == "invalid":
        assert record.error.startswith("place_order: invalid arguments: ")
        assert "order" in record.error or "express" in record.error


GUEST_PROBE = """\
import json, tools
value = json.loads({payload!r})
out = []
for call in ({calls}):
    try:
        out.append(["ok", call(value)])
    except tools.ToolError as e:
        out.append(["ToolError", str(e)])
print(json.dumps(out, ensure_ascii=True))
"""


@GUEST_FUZZ
@given(value=wild_values)
def test_property_guest_calls_with_arbitrary_values(tsb: Sandbox, value: Any) -> None:
    calls = "lambda v: tools.echo(x=v), lambda v: tools.place_order(v), lambda v: tools.add(v, b=v)"
    code = GUEST_PROBE.format(payload=json.dumps(value), calls=calls)
    result = tsb.run(code)
    out = last_json(result)
    assert len(out) == 3
    assert len(result.tool_calls) == 3
    for record in result.tool_calls:
        check_record(record)
    echo, order, add = out
    if contains_surrogate(value):
        assert echo[0] in ("ok", "ToolError")
    else:
        assert echo == ["ok", value]
    for (kind, message), tool in ((order, "place_order"), (add, "add")):
        if kind == "ToolError":
            assert message.startswith(f"{tool}: ")
            assert "invalid arguments" in message or "not a JSON object" in message


# ---------------------------------------------------------------------------
# Policy, approval, budgets, rate limit
# ---------------------------------------------------------------------------


def counting_registry(**options: Any) -> tuple[ToolRegistry, list[dict[str, Any]]]:
    reg = ToolRegistry(**options)
    calls: list[dict[str, Any]] = []

    @reg.tool
    def act(n: int, label: str = "x") -> int:
        calls.append({"n": n, "label": label})
        return n

    @reg.tool
    def other() -> str:
        calls.append({"other": True})
        return "other"

    @reg.tool(requires_approval=True)
    def dangerous(target: str) -> str:
        calls.append({"target": target})
        return f"deleted {target}"

    @reg.tool(max_calls=1)
    def once() -> int:
        calls.append({"once": True})
        return 1

    return reg, calls


LOOP = """\
import tools, json
out = []
for i in range({n}):
    try:
        out.append(tools.{call})
    except tools.ToolError as e:
        out.append(str(e))
print(json.dumps(out))
"""


def test_policy_returning_false_denies(assert_alive) -> None:
    reg, calls = counting_registry(policy=lambda call: call.arguments["n"] < 10 if call.tool == "act" else None)
    with Sandbox(tools=reg, prewarm=0) as sb:
        result = sb.run(
            "import tools, json\nout = [tools.act(1)]\ntry:\n    tools.act(99)\nexcept tools.ToolError as e:"
            "\n    out.append(str(e))\nprint(json.dumps(out + [tools.other()]))"
        )
    assert last_json(result) == [1, "act: denied: denied by policy", "other"]
    assert calls == [{"n": 1, "label": "x"}, {"other": True}]  # the denied handler never ran
    denied = result.tool_calls[1]
    assert (denied.decision, denied.outcome, denied.reason) == ("denied", "denied", "denied by policy")
    assert denied.arguments == {"n": 99, "label": "x"}
    assert_alive()


def test_policy_returning_a_reason_denies_with_it() -> None:
    def policy(call: ToolCall) -> str | None:
        return "labels must be lowercase" if call.arguments["label"] != call.arguments["label"].lower() else None

    reg, calls = counting_registry(policy=policy)
    with Sandbox(tools=reg, prewarm=0) as sb:
        result = sb.run("import tools\ntools.act(1, label='OK')")
    assert result.error is not None and result.error.kind == "tool"
    assert "labels must be lowercase" in result.error.message
    assert calls == []
    assert result.tool_calls[0].reason == "labels must be lowercase"
    assert reg.call("act", '{"n": 1, "label": "SHOUT"}').outcome == "denied"
    assert reg.call("act", '{"n": 1, "label": "quiet"}').outcome == "ok"


@pytest.mark.parametrize("verdict", [True, None])
def test_policy_returning_true_or_none_allows(verdict: Any) -> None:
    reg, calls = counting_registry(policy=lambda call: verdict)
    assert reg.call("act", '{"n": 3}').outcome == "ok"
    assert calls == [{"n": 3, "label": "x"}]


@pytest.mark.parametrize("error", [RuntimeError("policy store down"), KeyError("n"), ZeroDivisionError()])
def test_policy_that_raises_denies(error: Exception, assert_alive) -> None:
    def policy(call: ToolCall) -> bool:
        raise error

    reg, calls = counting_registry(policy=policy)
    with Sandbox(tools=reg, prewarm=0) as sb:
        result = sb.run(LOOP.format(n=1, call="act(1)"))
    (message,) = last_json(result)
    assert message.startswith("act: denied: policy failed: " + type(error).__name__)
    assert calls == []
    assert result.tool_calls[0].outcome == "denied"
    assert_alive()


def test_policy_sees_validated_call_and_code() -> None:
    seen: list[ToolCall] = []

    def policy(call: ToolCall) -> bool:
        seen.append(call)
        return True

    reg, _ = counting_registry(policy=policy)
    code = "import tools\ntools.act('7')\ntry:\n    tools.act('seven')\nexcept tools.ToolError:\n    pass"
    with Sandbox(tools=reg, prewarm=0) as sb:
        result = sb.run(code)
    assert result.ok, result.error
    (call,) = seen  # the invalid call never reached the policy
    assert call.tool == "act"
    assert call.arguments == {"n": 7, "label": "x"}  # coerced and with defaults
    assert call.source == "guest"
    assert call.code == code
    assert call.run_id == result.tool_calls[0].run_id

    reg.call("act", '{"n": 2}')
    assert seen[-1].source == "model" and seen[-1].code is None


@pytest.mark.parametrize(
    ("approver", "allowed", "reason"),
    [
        (lambda call: True, True, None),
        (lambda call: False, False, "not approved"),
        (lambda call: 1, False, "not approved"),  # only True approves
        (None, False, "requires approval, and no approver is configured"),
        (lambda call: 1 / 0, False, "approval failed: ZeroDivisionError"),
    ],
    ids=["true", "false", "truthy", "absent", "raises"],
)
def test_requires_approval(approver: Any, allowed: bool, reason: str | None) -> None:
    asked: list[ToolCall] = []

    def ask(call: ToolCall) -> Any:
        asked.append(call)
        return approver(call)

    reg, calls = counting_registry(approver=ask if approver is not None else None)
    with Sandbox(tools=reg, prewarm=0) as sb:
        result = sb.run(LOOP.format(n=1, call="dangerous('prod-db')") + "tools.act(5)")
    (answer,) = last_json(result)
    assert result.value == "5"  # tools without requires_approval are not asked about
    assert len(asked) == (1 if approver is not None else 0)
    if approver is not None:
        assert asked[0].tool == "dangerous" and asked[0].arguments == {"target": "prod-db"}
    record = result.tool_calls[0]
    if allowed:
        assert answer == "deleted prod-db"
        assert record.outcome == "ok"
        assert {"target": "prod-db"} in calls
    else:
        assert answer.startswith("dangerous: denied: ")
        assert record.outcome == "denied" and record.reason is not None
        assert record.reason.startswith(reason)
        assert {"target": "prod-db"} not in calls


def test_policy_denial_skips_the_approver() -> None:
    asked: list[ToolCall] = []
    reg, calls = counting_registry(policy=lambda call: False, approver=lambda call: asked.append(call) or True)
    assert reg.call("dangerous", '{"target": "x"}').outcome == "denied"
    assert asked == [] and calls == []


def test_run_budget_is_per_run() -> None:
    reg, calls = counting_registry(max_calls=3)
    with Sandbox(tools=reg, prewarm=0) as sb:
        first = sb.run(LOOP.format(n=5, call="act(i)"))
        second = sb.run(LOOP.format(n=5, call="act(i)"))
    for result in (first, second):
        out = last_json(result)
        assert out[:3] == [0, 1, 2]
        assert all("call budget exhausted (3 calls per run)" in m for m in out[3:])
        assert [r.outcome for r in result.tool_calls] == ["ok"] * 3 + ["denied"] * 2
    assert len(calls) == 6


def test_per_tool_budget_is_per_run() -> None:
    reg, _ = counting_registry()
    with Sandbox(tools=reg, prewarm=0) as sb:
        for _ in range(2):  # a second run on the same Sandbox gets a fresh budget
            out = last_json(sb.run("import tools\ntools.other()\n" + LOOP.format(n=3, call="once()")))
            assert out[0] == 1
            assert out[1:] == ["once: denied: call budget for once exhausted (1 calls per run)"] * 2


def test_zero_budget_denies_everything() -> None:
    reg, calls = counting_registry(max_calls=0)
    with Sandbox(tools=reg, prewarm=0) as sb:
        out = last_json(sb.run(LOOP.format(n=2, call="other()")))
    assert all("budget" in m for m in out)
    assert calls == []


def test_model_budget_follows_the_run_context() -> None:
    reg, _ = counting_registry(max_calls=2)
    conversation = RunContext()
    outcomes = [reg.call("act", '{"n": 1}', context=conversation).outcome for _ in range(3)]
    assert outcomes == ["ok", "ok", "denied"]
    assert len(conversation.records) == 3
    assert {r.run_id for r in conversation.records} == {conversation.run_id}
    # without a context, every call is its own conversation
    assert [reg.call("act", '{"n": 1}').outcome for _ in range(3)] == ["ok"] * 3


def test_rate_limit_spans_runs_and_model_calls() -> None:
    reg, calls = counting_registry(rate_limit=(3, 3600))
    with Sandbox(tools=reg, prewarm=0) as sb:
        first = last_json(sb.run(LOOP.format(n=2, call="act(i)")))
        second = last_json(sb.run(LOOP.format(n=2, call="act(i)")))
    assert first == [0, 1]
    assert second[0] == 0
    assert second[1] == "act: denied: rate limit exceeded; try again later"
    assert reg.call("other", "{}").outcome == "denied"
    assert len(calls) == 3
    # a separate registry has its own bucket
    other_reg, _ = counting_registry(rate_limit=(3, 3600))
    assert other_reg.call("other", "{}").outcome == "ok"


def test_rate_limit_refills() -> None:
    reg, _ = counting_registry(rate_limit=(1, 0.2))
    assert reg.call("other", "{}").outcome == "ok"
    assert reg.call("other", "{}").outcome == "denied"
    time.sleep(0.3)
    assert reg.call("other", "{}").outcome == "ok"


# ---------------------------------------------------------------------------
# Handlers that fail, hang or are async
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(FAILURES))
def test_handler_exceptions_become_tool_errors(tsb: Sandbox, assert_alive, kind: str) -> None:
    code = (
        "import tools\n"
        f"try:\n    tools.fail({kind!r})\nexcept tools.ToolError as e:\n    print('caught', e)\n"
        "print(tools.add(1))"
    )
    result = tsb.run(code)
    assert result.ok, result.error
    expected = {
        "keyboard": "fail: KeyboardInterrupt: ctrl-c in a handler",
        "exit": "fail: SystemExit: 3",
        "base": "fail: CustomBase: custom base exception",
        "value": "fail: ValueError: bad value 42",
        "tool": "no such row",
    }[kind]
    assert result.stdout == f"caught {expected}\n2\n"
    record = result.tool_calls[0]
    assert (record.decision, record.outcome, record.error) == ("allowed", "error", expected)
    assert result.tool_calls[1].outcome == "ok"  # the worker threads still work
    uncaught = tsb.run(f"import tools\ntools.fail({kind!r})")
    assert uncaught.error is not None and uncaught.error.kind == "tool"
    assert_alive()


def test_handler_exceptions_are_audited(tmp_path: Path, assert_alive) -> None:
    log = tmp_path / "audit.jsonl"
    reg = build_registry(audit=log)
    with Sandbox(tools=reg, prewarm=0) as sb:
        for kind in FAILURES:
            result = sb.run(f"import tools\ntools.fail({kind!r})")
            assert result.error is not None and result.error.kind == "tool"
    lines = AuditLog(log).read()
    assert [line["arguments"] for line in lines] == [{"kind": k} for k in FAILURES]
    assert all(line["outcome"] == "error" and line["tool"] == "fail" for line in lines)
    assert_alive()


def test_handler_error_with_failing_str() -> None:
    class Weird(ToolError):
        def __str__(self) -> str:
            raise RuntimeError("cannot print me")

    reg = ToolRegistry()

    @reg.tool
    def weird() -> int:
        raise Weird()

    with Sandbox(tools=reg, prewarm=0) as sb:
        result = sb.run("import tools\ntools.weird()")
    assert result.error is not None and result.error.kind == "tool"
    assert [r.outcome for r in result.tool_calls] == ["error"]


def test_handler_past_its_own_timeout(tsb: Sandbox, assert_alive) -> None:
    code = "import tools\ntry:\n    tools.nap(3)\nexcept tools.ToolError as e:\n    print(e)\nprint(tools.nap(0))"
    result = tsb.run(code)
    assert result.ok, result.error
    assert result.stdout == "nap: timed out after 0.2s\n0.0\n"
    record = result.tool_calls[0]
    assert record.outcome == "timeout"
    assert 0.15 <= record.duration_s < 2.0
    assert result.stats.duration_s < 2.5  # not the 3 s the handler sleeps
    assert_alive()


def test_handler_past_the_run_deadline(assert_alive) -> None:
    release = threading.Event()
    reg = ToolRegistry(default_timeout_s=60)

    @reg.tool
    def hang() -> int:
        release.wait(30)
        return 1

    code = "import tools\ntry:\n    tools.hang()\nexcept BaseException:\n    print('caught')"
    try:
        with Sandbox(tools=reg, limits=Limits(timeout_s=0.5), prewarm=0) as sb:
            started = time.perf_counter()
            result = sb.run(code)
            elapsed = time.perf_counter() - started
            assert result.error is not None
            assert result.error.kind == "timeout"
            assert "caught" not in result.stdout  # the guest cannot catch the deadline
            assert 0.5 <= elapsed < 15  # the deadline, not the tool's 30 s wait, ended the run
            (record,) = result.tool_calls
            assert record.outcome == "timeout"
            assert sb.run("1 + 1").value == "2"
    finally:
        release.set()
    assert_alive()


@pytest.mark.parametrize("hook", ["policy", "approver"])
def test_slow_policy_or_approver_respects_the_run_deadline(hook: str) -> None:
    release = threading.Event()

    def slow(call: ToolCall) -> bool:
        release.wait(30)
        return True

    reg = ToolRegistry(**{hook: slow})

    @reg.tool(requires_approval=True)
    def act() -> int:
        return 1

    with Sandbox(tools=reg, limits=Limits(timeout_s=0.5), prewarm=0) as sb:
        started = time.perf_counter()
        try:
            result = sb.run("import tools\ntools.act()")
            elapsed = time.perf_counter() - started
        finally:
            release.set()
    assert result.error is not None and result.error.kind == "timeout"
    assert 0.5 <= elapsed < 15  # the deadline, not the 30 s hook, ended the run


def test_async_handlers(tsb: Sandbox) -> None:
    code = (
        "import tools, json\nout = [tools.double(4), tools.double(x=5)]\n"
        "try:\n    tools.async_fail('async nope')\nexcept tools.ToolError as e:\n    out.append(str(e))\n"
        "print(json.dumps(out))"
    )
    result = tsb.run(code)
    assert last_json(result) == [8, 10, "async nope"]
    assert [r.outcome for r in result.tool_calls] == ["ok", "ok", "error"]


def test_async_handler_from_a_model_call(registry: ToolRegistry) -> None:
    record = registry.call("double", '{"x": 21}')
    assert record.outcome == "ok" and record.result == 42


# -- inline handlers (run on the run's own thread) -----------------------------


def inline_registry(**options: Any) -> tuple[ToolRegistry, dict[str, Sandbox], list[BaseException]]:
    reg = ToolRegistry(**options)
    holder: dict[str, Sandbox] = {}
    raised: list[BaseException] = []

    @reg.tool(inline=True)
    def total(values: list[float]) -> float:
        return sum(values)

    @reg.tool(inline=True)
    def explode(kind: str) -> int:
        raise FAILURES[kind]()

    @reg.tool(inline=True, timeout_s=0.1)
    def slow_inline(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @reg.tool(inline=True)
    def recurse() -> str | None:
        try:
            return holder["sb"].run("1").value
        except BaseException as exc:
            raised.append(exc)
            raise

    return reg, holder, raised


def test_inline_handlers(assert_alive) -> None:
    reg, holder, raised = inline_registry()
    code = """\
import tools, json
out = [tools.total([1, 2.5]), tools.total(values=[])]
for call in (lambda: tools.explode('keyboard'), lambda: tools.explode('exit'), lambda: tools.explode('value'),
             lambda: tools.slow_inline(0.3), tools.recurse):
    try:
        out.append(call())
    except tools.ToolError as e:
        out.append(str(e))
print(json.dumps(out))
"""
    with Sandbox(tools=reg, prewarm=0) as sb:
        holder["sb"] = sb
        result = sb.run(code)
        out = last_json(result)
        assert out[:5] == [
            3.5,
            0,
            "explode: KeyboardInterrupt: ctrl-c in a handler",
            "explode: SystemExit: 3",
            "explode: ValueError: bad value 42",
        ]
        assert out[5] == "slow_inline: timed out after 0.1s"  # checked once the handler returns
        assert out[6].startswith("recurse: ReentrancyError") and "re-entrant" in out[6]
        assert isinstance(raised[0], ReentrancyError)
        assert [r.outcome for r in result.tool_calls] == ["ok", "ok", "error", "error", "error", "timeout", "error"]
        assert sb.run("6 * 7").value == "42"
    assert reg.call("total", '{"values": [1, 1]}').result == 2
    assert_alive()


def test_inline_handler_past_the_run_deadline(assert_alive) -> None:
    reg = ToolRegistry()

    @reg.tool(inline=True)
    def busy() -> int:
        time.sleep(0.6)
        return 1

    with Sandbox(tools=reg, limits=Limits(timeout_s=0.3), prewarm=0) as sb:
        result = sb.run("import tools\ntry:\n    tools.busy()\nexcept BaseException:\n    print('caught')")
        assert result.error is not None and result.error.kind == "timeout"
        assert "caught" not in result.stdout
        assert result.stats.duration_s < 1.2  # the deadline is enforced once the handler returns
        assert [r.outcome for r in result.tool_calls] == ["timeout"]
        assert sb.run("1 + 1").value == "2"
    assert_alive()


# ---------------------------------------------------------------------------
# Re-entrancy, concurrency
# ---------------------------------------------------------------------------


def test_handler_cannot_rerun_its_sandbox(assert_alive) -> None:
    reg = ToolRegistry()
    holder: dict[str, Sandbox] = {}
    raised: list[BaseException] = []

    @reg.tool
    def recurse(code: str) -> str | None:
        try:
            return holder["sb"].run(code).value
        except BaseException as exc:
            raised.append(exc)
            raise

    with Sandbox(tools=reg, prewarm=0) as sb:
        holder["sb"] = sb
        result = sb.run("import tools\ntry:\n    tools.recurse('1 + 1')\nexcept tools.ToolError as e:\n    print(e)")
        assert result.ok, result.error
        assert "re-entrant" in result.stdout
        assert result.stdout.startswith("recurse: ReentrancyError")
        (exc,) = raised
        assert isinstance(exc, ReentrancyError)
        assert result.tool_calls[0].outcome == "error"
        assert sb.run("6 * 7").value == "42"
    assert_alive()


def test_concurrent_runs_keep_their_own_records(registry: ToolRegistry) -> None:
    with Sandbox(tools=registry, prewarm=0) as sb:

        def job(i: int) -> Result:
            return sb.run(f"import tools\n[tools.add({i}, b={i}) for _ in range(3)]")

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(job, range(8)))
    run_ids = set()
    for i, result in enumerate(results):
        assert result.value == repr([2 * i] * 3)
        assert [r.arguments for r in result.tool_calls] == [{"a": i, "b": i}] * 3
        ids = {r.run_id for r in result.tool_calls}
        assert len(ids) == 1
        run_ids |= ids
    assert len(run_ids) == 8


# ---------------------------------------------------------------------------
# Credentials stay on the host
# ---------------------------------------------------------------------------


def test_credentials_never_reach_the_guest(assert_alive) -> None:
    secret = "sk-live-" + secrets.token_hex(16)
    reg = ToolRegistry()

    def make_client(api_key: str) -> None:
        @reg.tool
        def fetch_report(report_id: str) -> dict[str, str]:
            """Fetch a report from the billing API (authenticated on the host)."""
            signature = hmac.new(api_key.encode(), report_id.encode(), hashlib.sha256).hexdigest()
            return {"report_id": report_id, "signature": signature}

        @reg.tool
        def check_key(candidate: str) -> bool:
            """Whether `candidate` is the key."""
            if candidate != api_key:
                raise ToolError("wrong key")
            return True

    make_client(secret)
    # The guest knows the prefix of the key (say, from the API's docs) and hunts for the rest.
    code = """\
import gc, sys, json, tools
f = tools.fetch_report
print(dir(tools))
help(tools)
help(f)
print(vars(f), f.__defaults__, f.__kwdefaults__, f.__code__.co_consts, f.__code__.co_names)
print([repr(c.cell_contents) for c in (f.__closure__ or ())])
print({k: repr(v) for k, v in globals().items()})
print(sorted(sys.modules))
report = f("r-1")
print(json.dumps(report))
try:
    tools.check_key("sk-" + "live-guess")
except tools.ToolError as e:
    print("check_key:", e)
prefix = "sk-" + "live-"
hits = []
for obj in gc.get_objects():
    for ref in gc.get_referents(obj):
        if isinstance(ref, str) and prefix in ref and ref != prefix and "guess" not in ref:
            hits.append(ref)
print("HITS", len(hits), hits[:3])
"""
    with Sandbox(tools=reg, prewarm=0) as sb:
        result = sb.run(code)
    assert result.ok, result.error
    # The key was used on the host ...
    expected = hmac.new(secret.encode(), b"r-1", hashlib.sha256).hexdigest()
    assert json.dumps({"report_id": "r-1", "signature": expected}) in result.stdout
    assert "check_key: wrong key" in result.stdout
    # ... and never appears anywhere the guest can see or report.
    assert "HITS 0 []" in result.stdout
    everything = json.dumps(msgspec.to_builtins(result))
    assert secret not in everything
    assert secret[8:] not in everything
    assert secret not in json.dumps(reg.guest_specs())
    assert secret not in json.dumps(reg.openai_tools())
    assert_alive()


# ---------------------------------------------------------------------------
# Audit
# ---------------------------------------------------------------------------

AUDITED_CODE = """\
import tools
tools.add(1)
try:
    tools.fail('value')
except tools.ToolError:
    pass
try:
    tools.add('x')
except tools.ToolError:
    pass
tools.echo(x=[1, {'k': 'v'}])
"""


def test_result_has_one_record_per_call(tsb: Sandbox) -> None:
    before = time.time()
    result = tsb.run(AUDITED_CODE)
    after = time.time()
    assert result.ok, result.error
    records = [check_record(r) for r in result.tool_calls]
    assert result.stats.tool_calls == len(records) == 4
    assert [r.tool for r in records] == ["add", "fail", "add", "echo"]
    assert [r.outcome for r in records] == ["ok", "error", "invalid", "ok"]
    assert [r.decision for r in records] == ["allowed", "allowed", "invalid", "allowed"]
    assert records[0].arguments == {"a": 1, "b": 1} and records[0].result == 2
    assert records[1].arguments == {"kind": "value"} and records[1].error == "fail: ValueError: bad value 42"
    assert records[2].arguments == '{"a": "x"}'  # invalid: the raw payload
    assert records[3].arguments == {"x": [1, {"k": "v"}]} and records[3].result == [1, {"k": "v"}]
    assert all(r.source == "guest" for r in records)
    assert len({r.run_id for r in records}) == 1
    assert [r.id for r in records] == sorted(r.id for r in records)
    assert all(before <= r.started_at <= after for r in records)
    assert all(0 <= r.duration_s <= after - before for r in records)
    assert tsb.run("import tools\ntools.add(1)").tool_calls[0].run_id != records[0].run_id


@pytest.mark.parametrize("as_object", [False, True], ids=["path", "AuditLog"])
def test_audit_log_has_the_same_records_plus_code(tmp_path: Path, as_object: bool) -> None:
    path = tmp_path / "nested" / "dir" / "audit.jsonl"
    reg = build_registry(audit=AuditLog(path) if as_object else str(path))
    with Sandbox(tools=reg, prewarm=0) as sb:
        result = sb.run(AUDITED_CODE)
        second = sb.run("import tools\ntools.add(2)")
    model = reg.call("add", '{"a": 3}')
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 6
    expected = [*result.tool_calls, *second.tool_calls, model]
    for line, record in zip(lines, expected, strict=True):
        logged = {k: v for k, v in line.items() if k not in ("code", "logged_at")}
        assert logged == msgspec.to_builtins(record)
        assert line["logged_at"] >= record.started_at
    assert [line["code"] for line in lines] == [AUDITED_CODE] * 4 + ["import tools\ntools.add(2)", None]
    assert lines[-1]["source"] == "model"
    assert model.source == "model"
    assert AuditLog(path).read() == lines


def test_model_calls_are_audited_with_every_outcome(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    reg = build_registry(audit=path, policy=lambda call: call.tool != "lookup")
    records = [
        reg.call("add", '{"a": 1}'),
        reg.call("add", "{"),
        reg.call("lookup", '{"key": "k"}'),
        reg.call("fail", '{"kind": "value"}'),
        reg.call("nap", '{"seconds": 1}'),
        reg.call("nope", "{}"),
    ]
    assert [r.outcome for r in records] == ["ok", "invalid", "denied", "error", "timeout", "invalid"]
    lines = AuditLog(path).read()
    assert [line["outcome"] for line in lines] == [r.outcome for r in records]
    assert all(line["source"] == "model" and line["code"] is None for line in lines)


def test_public_api() -> None:
    assert issubclass(wasmrun.ToolError, wasmrun.WasmrunError)
    assert issubclass(wasmrun.ReentrancyError, RuntimeError)
    reg = build_registry()
    assert set(reg.tools) >= {"add", "place_order", "echo"}
    tool = reg.tools["add"]
    assert tool.name == "add" and tool.description == "Add two numbers."
    assert tool.timeout_s == 30.0 and reg.tools["nap"].timeout_s == 0.2
    reg.tools.clear()  # a copy: the registry is unaffected
    assert "add" in reg.tools
