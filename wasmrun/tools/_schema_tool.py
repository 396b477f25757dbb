"""Tools described by a JSON schema instead of a Python signature (e.g. the tools of a remote MCP server).

A `SchemaSignature` stands where a `ToolSignature` would: the registry's
pipeline calls its `bind` to validate the decoded arguments (with the
``jsonschema`` reference implementation, installed with ``wasmrun[mcp]``), and
the guest's ``import tools`` gets a stub built from the schema's properties:
required properties are positional-or-keyword (in the schema's order), optional
ones keyword-only. The handler is called with the validated arguments as
keywords, exactly the keys the caller gave (a schema's defaults are the remote
side's to apply).

The schema itself may come from an untrusted server: it is checked against its
metaschema when registered; ``$ref`` resolves only inside the schema (nothing is
fetched), and a schema that makes validation recurse too deeply fails the call,
not the host.
"""

from __future__ import annotations

import copy
import itertools
import json
import keyword
from collections.abc import Mapping
from typing import Any

import pydantic

_TYPE_NAMES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
    "null": "None",
}
_MAX_ERRORS = 5
_MAX_MESSAGE = 300


class InvalidArguments(ValueError):
    """Arguments that do not match a tool's JSON schema; the message names the JSON paths."""


class SchemaSignature:
    """The signature of a tool whose arguments are described by a JSON schema (an object schema)."""

    positional_only: list[str]

    def __init__(self, name: str, schema: Mapping[str, Any], description: str | None) -> None:
        try:
            import jsonschema
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "tools with a JSON schema need the jsonschema package: pip install 'wasmrun[mcp]'"
            ) from exc
        if not isinstance(schema, Mapping):
            raise TypeError(f"tool {name!r}: the schema must be a JSON object, got {type(schema).__name__}")
        self.schema: dict[str, Any] = copy.deepcopy(dict(schema))
        if self.schema.get("type", "object") != "object":
            raise ValueError(f"tool {name!r}: the schema must describe an object, got type {self.schema['type']!r}")
        validator_class = jsonschema.validators.validator_for(self.schema, default=jsonschema.Draft202012Validator)
        try:
            validator_class.check_schema(self.schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"tool {name!r}: invalid JSON schema: {_short(exc.message)}") from None
        self._validator = validator_class(self.schema, format_checker=validator_class.FORMAT_CHECKER)
        properties = self.schema.get("properties") or {}
        required = [key for key in self.schema.get("required", []) if key in properties]
        for prop in properties:
            if not prop.isidentifier() or keyword.iskeyword(prop):
                raise ValueError(
                    f"tool {name!r}: property {prop!r} is not a Python identifier, so guest code cannot pass it"
                )

        self.description = (description or "").strip() or name
        self.positional_only = []
        self.guest_params: list[dict[str, Any]] = []
        lines = [self.description, "", "Args:"] if properties else [self.description]
        ordered = [*required, *(key for key in properties if key not in required)]
        for prop in ordered:
            sub = properties[prop] if isinstance(properties[prop], dict) else {}
            annotation = _annotation(sub)
            spec: dict[str, Any] = {
                "name": prop,
                "kind": "POSITIONAL_OR_KEYWORD" if prop in required else "KEYWORD_ONLY",
                "annotation": annotation,
            }
            if prop not in required:
                if "default" in sub:
                    spec["default"] = sub["default"]
                else:
                    spec["default_repr"] = "<unset>"  # left out of the call: the remote side applies its default
            self.guest_params.append(spec)
            about = str(sub.get("description") or sub.get("title") or "").strip()
            lines.append(f"    {prop} ({annotation}{'' if prop in required else ', optional'}): {about}".rstrip(": "))
        self.docstring = "\n".join(lines)
        self.returns: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)
        self.return_annotation = "Any"

    def dump_result(self, value: Any) -> Any:
        """A handler's return value as JSON-ready data (the result has no schema: any JSON value)."""
        if value is None:
            return None
        return self.returns.dump_python(self.returns.validate_python(value), mode="json")

    def bind(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
        """Validate `arguments` against the schema: (as shown in records, [], keyword values).

        Raises `InvalidArguments` naming up to five problems by JSON path.
        """
        try:
            errors = list(itertools.islice(self._validator.iter_errors(arguments), _MAX_ERRORS + 1))
        except RecursionError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a $ref to nowhere: the schema's fault, never the host's
            raise InvalidArguments(f"the tool's schema cannot be applied: {_short(str(exc))}") from None
        if errors:
            shown = [f"{_path(error.absolute_path)}: {_short(error.message)}" for error in errors[:_MAX_ERRORS]]
            more = " (and more)" if len(errors) > _MAX_ERRORS else ""
            raise InvalidArguments("; ".join(shown) + more)
        return dict(arguments), [], dict(arguments)


def _path(parts: Any) -> str:
    return ".".join(str(part) for part in parts) or "arguments"


def _short(message: str) -> str:
    # jsonschema quotes the offending value in its messages: keep them short, whatever the caller sent
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def _annotation(schema: dict[str, Any]) -> str:
    """A Python-looking type for the guest stub (documentation only: the host validates)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return _TYPE_NAMES.get(kind, "Any")
    if isinstance(kind, list):
        return " | ".join(_TYPE_NAMES.get(k, "Any") for k in kind if isinstance(k, str)) or "Any"
    if "enum" in schema and isinstance(schema["enum"], list):
        return "Literal[" + ", ".join(json.dumps(v) for v in schema["enum"][:10]) + "]"
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return " | ".join(_annotation(o) if isinstance(o, dict) else "Any" for o in options) or "Any"
    return "Any"
