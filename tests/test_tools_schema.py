"""Tool schemas: OpenAI strict definitions, descriptions from docstrings, and registration errors."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasmrun import Sandbox, ToolError, ToolRegistry

SCHEMA_FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    """A postal address."""

    street: str = pydantic.Field(description="Street and number")
    city: str
    zip: str | None = None


class Person(pydantic.BaseModel):
    name: str
    address: Address
    previous: list[Address]
    favourite: Color
    nickname: str | None = None


class Line(pydantic.BaseModel):
    sku: str
    qty: int = 1


class Node(pydantic.BaseModel):
    children: list[Node] = []


def build_registry() -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool
    def register_person(
        person: Person,
        note: str | None = None,
        mode: Literal["fast", "slow"] = "fast",
        limit: Annotated[int, pydantic.Field(ge=1, le=10)] = 5,
        *,
        dry_run: bool = False,
    ) -> str:
        """Register a person in the directory.

        Registration is idempotent.

        Args:
            person: Who to register.
            note: A free-text note for the record.
            mode: How hard to try.
            limit: How many matches to consider.
            dry_run: Validate only.

        Returns:
            The new record's id.

        Raises:
            ToolError: when the directory is down.
        """
        return f"{person.name}:{mode}:{limit}:{dry_run}"

    @reg.tool(name="ping", description="Check that the service is up.")
    def _ping() -> bool:
        """This docstring is not the description."""
        return True

    @reg.tool
    def undocumented(x: int) -> int:
        return x

    return reg


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return build_registry()


def schema_nodes(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema (sub)object, with a path; property *names* are not mistaken for keywords."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from schema_nodes(item, f"{path}[{i}]")
        return
    if not isinstance(node, dict):
        return
    yield path, node
    for key, value in node.items():
        if key == "properties":
            for prop, sub in value.items():
                yield from schema_nodes(sub, f"{path}.{prop}")
        elif isinstance(value, (dict, list)):
            yield from schema_nodes(value, f"{path}/{key}")


def all_keys(node: Any) -> set[str]:
    keys: set[str] = set()
    for _, schema in schema_nodes(node):
        keys |= set(schema)
    return keys


def assert_strict(parameters: dict[str, Any]) -> None:
    assert parameters["type"] == "object"
    text = json.dumps(parameters)
    assert "$ref" not in text and "$defs" not in text and "definitions" not in all_keys(parameters)
    assert not {"title", "default"} & all_keys(parameters)
    objects = 0
    for path, node in schema_nodes(parameters):
        if node.get("type") == "object" or "properties" in node:
            objects += 1
            assert node.get("additionalProperties") is False, path
            assert sorted(node["required"]) == sorted(node["properties"]), path
            assert len(node["required"]) == len(set(node["required"])), path
    assert objects >= 1


def definition(registry: ToolRegistry, name: str) -> dict[str, Any]:
    (tool,) = [t for t in registry.openai_tools() if t["function"]["name"] == name]
    return tool


# ---------------------------------------------------------------------------
# OpenAI strict definitions
# ---------------------------------------------------------------------------


def test_every_definition_is_strict(registry: ToolRegistry) -> None:
    tools = registry.openai_tools()
    assert [t["function"]["name"] for t in tools] == ["register_person", "ping", "undocumented"]
    for tool in tools:
        assert tool["type"] == "function"
        assert tool["function"]["strict"] is True
        assert isinstance(tool["function"]["description"], str) and tool["function"]["description"]
        assert_strict(tool["function"]["parameters"])
    json.dumps(tools)  # plain JSON


def test_nested_models_are_inlined(registry: ToolRegistry) -> None:
    params = definition(registry, "register_person")["function"]["parameters"]
    assert list(params["properties"]) == ["person", "note", "mode", "limit", "dry_run"]
    person = params["properties"]["person"]
    assert person["type"] == "object"
    assert person["required"] == ["name", "address", "previous", "favourite", "nickname"]
    address = person["properties"]["address"]
    assert address["type"] == "object"
    assert set(address["properties"]) == {"street", "city", "zip"}
    assert address["properties"]["street"]["description"] == "Street and number"
    assert person["properties"]["previous"]["type"] == "array"
    assert set(person["properties"]["previous"]["items"]["properties"]) == {"street", "city", "zip"}
    assert person["properties"]["favourite"]["enum"] == ["red", "blue"]  # an enum, inlined
    limit = params["properties"]["limit"]["anyOf"][0]
    assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 10)


def nullable(schema: dict[str, Any]) -> bool:
    return any(s.get("type") == "null" for s in schema.get("anyOf", [])) or schema.get("type") == "null"


def test_optional_parameters_are_required_but_nullable(registry: ToolRegistry) -> None:
    params = definition(registry, "register_person")["function"]["parameters"]
    assert params["required"] == ["person", "note", "mode", "limit", "dry_run"]
    assert not nullable(params["properties"]["person"])
    for name in ("note", "mode", "limit", "dry_run"):
        assert nullable(params["properties"][name]), name
    note = params["properties"]["note"]
    assert [s["type"] for s in note["anyOf"]] == ["string", "null"]  # not null twice
    nickname = params["properties"]["person"]["properties"]["nickname"]
    assert nullable(nickname)


def test_descriptions_come_from_the_docstring(registry: ToolRegistry) -> None:
    function = definition(registry, "register_person")["function"]
    assert function["description"] == "Register a person in the directory.\n\nRegistration is idempotent."
    props = function["parameters"]["properties"]
    assert props["person"]["description"] == "Who to register."
    assert props["note"]["description"] == "A free-text note for the record."
    assert props["mode"]["description"] == "How hard to try."
    assert props["limit"]["description"] == "How many matches to consider."
    assert props["dry_run"]["description"] == "Validate only."
    for section in ("Args", "Returns", "Raises", "new record's id"):
        assert section not in function["description"]


def test_description_override_and_fallback(registry: ToolRegistry) -> None:
    assert definition(registry, "ping")["function"]["description"] == "Check that the service is up."
    assert definition(registry, "ping")["function"]["parameters"]["properties"] == {}
    assert definition(registry, "undocumented")["function"]["description"] == "undocumented"


def test_strict_payload_with_nulls_is_accepted(registry: ToolRegistry) -> None:
    """What a strict-mode model sends (every key present, null for "not given") validates."""
    person = {
        "name": "ada",
        "address": {"street": "1 Main St", "city": "London", "zip": None},
        "previous": [],
        "favourite": "blue",
        "nickname": None,
    }
    payload = {"person": person, "note": None, "mode": None, "limit": None, "dry_run": None}
    record = registry.call("register_person", json.dumps(payload))
    assert record.outcome == "ok", record.error
    assert record.result == "ada:fast:5:False"
    assert record.arguments["note"] is None


def test_the_strict_schema_accepts_what_the_model_will_send(registry: ToolRegistry) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    params = definition(registry, "register_person")["function"]["parameters"]
    jsonschema.Draft202012Validator.check_schema(params)
    validator = jsonschema.Draft202012Validator(params)
    good = {
        "person": {
            "name": "ada",
            "address": {"street": "s", "city": "c", "zip": "123"},
            "previous": [{"street": "t", "city": "d", "zip": None}],
            "favourite": "red",
            "nickname": "al",
        },
        "note": "hi",
        "mode": "slow",
        "limit": 10,
        "dry_run": True,
    }
    assert not list(validator.iter_errors(good))
    assert registry.call("register_person", json.dumps(good)).outcome == "ok"
    missing = {k: v for k, v in good.items() if k != "note"}
    assert list(validator.iter_errors(missing))  # strict: every property is required
    extra = {**good, "surprise": 1}
    assert list(validator.iter_errors(extra))
    assert registry.call("register_person", json.dumps(extra)).outcome == "invalid"


addresses = st.builds(
    Address, street=st.text(max_size=10), city=st.text(max_size=10), zip=st.none() | st.text(max_size=5)
)
people = st.builds(
    Person,
    name=st.text(max_size=10),
    address=addresses,
    previous=st.lists(addresses, max_size=3),
    favourite=st.sampled_from(Color),
    nickname=st.none() | st.text(max_size=5),
)


@SCHEMA_FUZZ
@given(
    person=people,
    note=st.none() | st.text(max_size=10),
    mode=st.sampled_from(["fast", "slow"]),
    limit=st.integers(1, 10),
    dry_run=st.booleans(),
)
def test_property_valid_calls_conform_to_the_schema(
    registry: ToolRegistry, person: Person, note: str | None, mode: str, limit: int, dry_run: bool
) -> None:
    """Any valid call, as a strict-mode model would write it, passes the schema and the validator."""
    jsonschema = pytest.importorskip("jsonschema")
    params = definition(registry, "register_person")["function"]["parameters"]
    payload = {
        "person": person.model_dump(mode="json"),
        "note": note,
        "mode": mode,
        "limit": limit,
        "dry_run": dry_run,
    }
    assert not list(jsonschema.Draft202012Validator(params).iter_errors(payload))
    record = registry.call("register_person", json.dumps(payload))
    assert record.outcome == "ok", record.error
    assert record.result == f"{person.name}:{mode}:{limit}:{dry_run}"


def test_parameters_named_like_schema_keywords() -> None:
    reg = ToolRegistry()

    @reg.tool
    def create_issue(title: str, default: bool = False, description: str = "") -> str:
        return title

    params = reg.openai_tools()[0]["function"]["parameters"]
    assert sorted(params["properties"]) == ["default", "description", "title"]
    assert sorted(params["required"]) == ["default", "description", "title"]


def test_null_for_nested_defaulted_field() -> None:
    reg = ToolRegistry()

    @reg.tool
    def order(lines: list[Line]) -> int:
        return sum(line.qty for line in lines)

    qty = reg.openai_tools()[0]["function"]["parameters"]["properties"]["lines"]["items"]["properties"]["qty"]
    assert nullable(qty)  # the schema invites a null here ...
    record = reg.call("order", '{"lines": [{"sku": "a", "qty": null}]}')
    assert record.outcome == "ok", record.error  # ... so a null must mean "the default"
    assert record.result == 1


def test_mapping_parameter_is_usable_by_a_strict_model() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    reg = ToolRegistry()

    @reg.tool
    def set_counts(counts: dict[str, int]) -> int:
        return sum(counts.values())

    payload = {"counts": {"a": 1, "b": 2}}
    assert reg.call("set_counts", json.dumps(payload)).result == 3
    params = reg.openai_tools()[0]["function"]["parameters"]
    assert not list(jsonschema.Draft202012Validator(params).iter_errors(payload))


def test_recursive_model_cannot_be_described() -> None:
    reg = ToolRegistry()

    @reg.tool
    def count(root: Node) -> int:
        return 1 + sum(count(child) for child in root.children)

    # Calls work (the validator handles recursion) ...
    record = reg.call("count", '{"root": {"children": [{"children": []}, {}]}}')
    assert record.outcome == "ok" and record.result == 3
    # ... but a strict schema cannot express it: the tool is exported non-strict, with its $defs,
    # rather than hanging, raising, or breaking openai_tools() for every other tool.
    (definition,) = reg.openai_tools()
    assert definition["function"]["strict"] is False
    assert "$defs" in definition["function"]["parameters"]


# ---------------------------------------------------------------------------
# What the guest sees of a tool
# ---------------------------------------------------------------------------


def test_guest_specs_carry_names_docs_and_parameters(registry: ToolRegistry) -> None:
    specs = {spec["name"]: spec for spec in registry.guest_specs()}
    assert set(specs) == {"register_person", "ping", "undocumented"}
    params = specs["register_person"]["params"]
    assert [p["name"] for p in params] == ["person", "note", "mode", "limit", "dry_run"]
    assert [p["kind"] for p in params][-1] == "KEYWORD_ONLY"
    assert "default" not in params[0] and params[2]["default"] == "fast" and params[3]["default"] == 5
    assert "Args:" in specs["register_person"]["doc"]  # the full docstring, for help()
    json.dumps(specs)


def test_guest_help_matches_the_schema(registry: ToolRegistry) -> None:
    with Sandbox(tools=registry, prewarm=0) as sb:
        result = sb.run("import tools\nhelp(tools.register_person)\nhelp(tools.ping)")
    assert result.ok, result.error
    assert "register_person(" in result.stdout
    assert "person: " in result.stdout and "Person" in result.stdout
    assert "note: str | None = None" in result.stdout
    assert "mode: Literal['fast', 'slow'] = 'fast'" in result.stdout
    assert "dry_run: bool = False" in result.stdout
    assert result.stdout.index("*") < result.stdout.index("dry_run")
    assert "Who to register." in result.stdout
    assert "ping()" in result.stdout


# ---------------------------------------------------------------------------
# Registration errors
# ---------------------------------------------------------------------------


def test_duplicate_names() -> None:
    reg = ToolRegistry()

    @reg.tool
    def lookup(key: str) -> str:
        return key

    def lookup_again(key: str) -> str:
        return key

    with pytest.raises(ValueError, match="already registered"):
        reg.tool(name="lookup")(lookup_again)

    def other(key: str) -> str:
        return key

    with pytest.raises(ValueError, match="already registered"):
        reg.tool(name="lookup")(other)
    assert reg.tools["lookup"].func is lookup
    reg.tool(name="other_lookup")(other)  # a different name is fine
    assert set(reg.tools) == {"lookup", "other_lookup"}


@pytest.mark.parametrize("name", ["has-dash", "has space", "1starts_with_digit", "dotted.name", "ToolError", "é"])
def test_invalid_names(name: str) -> None:
    reg = ToolRegistry()

    def fn(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="identifier"):
        reg.tool(name=name)(fn)
    assert reg.tools == {}


def test_star_args_and_kwargs_are_refused() -> None:
    reg = ToolRegistry()

    def star(*items: int) -> int:
        return sum(items)

    def double_star(**options: int) -> int:
        return len(options)

    def mixed(a: int, *rest: int, **more: int) -> int:
        return a

    for fn in (star, double_star, mixed):
        with pytest.raises(TypeError, match=r"\*args/\*\*kwargs"):
            reg.tool(fn)
    assert reg.tools == {}


def test_missing_or_broken_annotations_are_refused() -> None:
    reg = ToolRegistry()

    def untyped(a, b: int) -> int:  # type: ignore[no-untyped-def]
        return b

    def partly(a: int, b) -> int:  # type: ignore[no-untyped-def]
        return a

    def unresolvable(a: NoSuchType) -> int:  # type: ignore[name-defined]  # noqa: F821
        return 1

    with pytest.raises(TypeError, match="'a' needs a type annotation"):
        reg.tool(untyped)
    with pytest.raises(TypeError, match="'b' needs a type annotation"):
        reg.tool(partly)
    with pytest.raises(TypeError, match="type hints"):
        reg.tool(unresolvable)
    assert reg.tools == {}


def test_missing_return_annotation_is_fine() -> None:
    reg = ToolRegistry()

    @reg.tool
    def anything(a: int):  # type: ignore[no-untyped-def]
        return {"a": [a]}

    assert reg.call("anything", '{"a": 1}').result == {"a": [1]}


@pytest.mark.parametrize(
    "options",
    [
        {"timeout_s": 0},
        {"timeout_s": -1},
        {"timeout_s": float("nan")},
        {"timeout_s": True},
        {"max_calls": -1},
        {"max_calls": 1.5},
        {"max_calls": True},
    ],
)
def test_bad_tool_options(options: dict[str, Any]) -> None:
    reg = ToolRegistry()

    def fn() -> int:
        return 1

    with pytest.raises(ValueError):
        reg.tool(**options)(fn)
    assert reg.tools == {}


def test_inline_needs_a_synchronous_handler() -> None:
    reg = ToolRegistry()

    async def fetch() -> int:
        return 1

    with pytest.raises(ValueError, match="synchronous"):
        reg.tool(inline=True)(fetch)


@pytest.mark.parametrize(
    "options",
    [
        {"max_calls": -1},
        {"max_calls": True},
        {"rate_limit": (0, 1.0)},
        {"rate_limit": (1, 0)},
        {"rate_limit": (True, 1.0)},
        {"default_timeout_s": 0},
        {"default_timeout_s": 10**9},
    ],
)
def test_bad_registry_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ToolRegistry(**options)


def test_decorator_returns_the_function_unchanged() -> None:
    reg = ToolRegistry()

    def plain(a: int) -> int:
        return a + 1

    assert reg.tool(plain) is plain
    assert reg.tool(name="plain2", timeout_s=1, max_calls=2)(plain) is plain
    assert plain(1) == 2  # still an ordinary function on the host
    assert reg.tools["plain2"].timeout_s == 1.0 and reg.tools["plain2"].max_calls == 2


def test_positional_only_parameters() -> None:
    reg = ToolRegistry()

    def square(x: int, /) -> int:
        return x * x

    try:
        reg.tool(square)
    except TypeError:
        return  # refusing them at registration would be fine too
    record = reg.call("square", '{"x": 3}')
    assert record.outcome == "ok", record.error
    assert record.result == 9


def test_parameter_named_model_config() -> None:
    reg = ToolRegistry()

    def configure(model_config: str) -> str:
        return model_config

    try:
        reg.tool(configure)
    except (TypeError, ValueError):
        return  # refusing it at registration would be fine too
    record = reg.call("configure", '{"model_config": "x"}')
    assert record.outcome == "ok", record.error


def test_tool_error_is_importable_for_handlers() -> None:
    reg = ToolRegistry()

    @reg.tool
    def strict_tool(x: int) -> int:
        if x < 0:
            raise ToolError("x must be >= 0")
        return x

    assert reg.call("strict_tool", '{"x": 1}').result == 1
    record = reg.call("strict_tool", '{"x": -1}')
    assert record.outcome == "error"
    assert record.error is not None and record.error.endswith("x must be >= 0")
