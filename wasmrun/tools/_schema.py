"""Tool schemas from signatures and docstrings: pydantic models, OpenAI strict definitions, guest specs.

A tool's schema is written once, as a typed Python signature with a docstring;
everything else (argument validation, the JSON schema a model sees, the stub
`import tools` shows in the guest) is derived from it here.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import typing
from collections.abc import Callable
from typing import Any

import docstring_parser
import pydantic

_UNSUPPORTED_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class ToolSignature:
    """What wasmrun derives from one tool function."""

    def __init__(self, func: Callable[..., Any], name: str, description: str | None) -> None:
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except Exception as exc:
            raise TypeError(f"tool {name!r}: cannot resolve type hints: {exc}") from exc
        signature = inspect.signature(func)
        doc = docstring_parser.parse(inspect.getdoc(func) or "")
        param_docs = {p.arg_name: p.description for p in doc.params}
        self.description = description or _summary(doc) or name
        self.docstring = inspect.getdoc(func) or self.description

        fields: dict[str, Any] = {}
        self.guest_params: list[dict[str, Any]] = []
        self.positional_only: list[str] = []
        for param in signature.parameters.values():
            if param.kind in _UNSUPPORTED_KINDS:
                raise TypeError(f"tool {name!r}: *args/**kwargs parameters are not supported ({param})")
            if param.name.startswith("model_") and hasattr(pydantic.BaseModel, param.name):
                raise ValueError(f"tool {name!r}: parameter name {param.name!r} is reserved by pydantic; rename it")
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                self.positional_only.append(param.name)
            if param.name not in hints:
                raise TypeError(f"tool {name!r}: parameter {param.name!r} needs a type annotation")
            annotation = hints[param.name]
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, pydantic.Field(default, description=param_docs.get(param.name)))
            spec: dict[str, Any] = {
                "name": param.name,
                "kind": "KEYWORD_ONLY" if param.kind is inspect.Parameter.KEYWORD_ONLY else "POSITIONAL_OR_KEYWORD",
                "annotation": _show_annotation(annotation),
            }
            if default is not ...:
                try:
                    spec["default"] = json.loads(json.dumps(default))
                except (TypeError, ValueError):
                    spec["default_repr"] = repr(default)
            self.guest_params.append(spec)

        self.arguments: type[pydantic.BaseModel] = pydantic.create_model(
            f"{name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid", protected_namespaces=()),
            **fields,
        )
        try:
            self.schema: dict[str, Any] = self.arguments.model_json_schema()
        except pydantic.PydanticUserError as exc:
            raise TypeError(f"tool {name!r}: its parameters have no JSON schema: {exc}") from exc
        returns = hints.get("return", Any)
        self.returns: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any if returns is None else returns)
        self.return_annotation = inspect.formatannotation(returns)
        # Computed once, used on every call (`bind`, `dump_result` are on each tool call's path).
        self._fields = tuple(fields)
        self._validate = self.arguments.__pydantic_validator__.validate_python
        self._dump = self.arguments.__pydantic_serializer__.to_python
        # `-> None` and `-> Any` pass None through validation and serialisation unchanged.
        self.none_result_ok = returns in (None, type(None), Any)

    def bind(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
        """Validate decoded arguments: (as shown in records, positional values, keyword values) for the handler.

        Raises ``pydantic.ValidationError`` when they do not fit the signature.
        """
        if not arguments and not self._fields:
            return {}, [], {}  # what validating {} against a model without fields gives, without the model
        # `model_validate` / `model_dump(mode="json")` without their Python wrappers.
        model = self._validate(arguments)
        shown: dict[str, Any] = self._dump(model, mode="json")
        values = {key: getattr(model, key) for key in self._fields}
        positional = [values.pop(key) for key in self.positional_only]
        return shown, positional, values

    def dump_result(self, value: Any) -> Any:
        """A handler's return value validated against its annotation, as JSON-ready data.

        Raises ``pydantic.ValidationError`` (or a serialisation error) when it does not fit.
        """
        if value is None and self.none_result_ok:
            return None
        return self.returns.dump_python(self.returns.validate_python(value), mode="json")


def _show_annotation(annotation: Any) -> str:
    """How the guest stub shows a parameter type: short names, ``Annotated`` constraints stay on the host."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return _QUALIFIED.sub(r"\1", inspect.formatannotation(annotation))


_QUALIFIED = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")


class NotStrict(ValueError):
    """A schema that OpenAI strict mode cannot express (free-form mapping, recursion)."""


def openai_parameters(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(parameters, strict): the strict form when possible, else the plain schema with ``strict: false``."""
    try:
        return strict_json_schema(schema), True
    except NotStrict:
        relaxed = {k: v for k, v in schema.items() if k != "title"}
        return relaxed, False


def drop_default_nulls(value: Any, schema: dict[str, Any]) -> Any:
    """Drop ``null`` values where the strict schema allowed them only to stand for "use the default".

    Strict mode makes every optional property nullable, at every depth; a model
    then sends ``null`` for "not given". Guided by the real (non-strict) schema,
    remove such nulls so that validation applies the default.
    """
    return _drop_nulls(value, schema, schema.get("$defs", {}), 0)


def _resolve(schema: Any, defs: dict[str, Any]) -> Any:
    for _ in range(32):
        if not isinstance(schema, dict) or "$ref" not in schema:
            break
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema


def _accepts_null(schema: Any, defs: dict[str, Any]) -> bool:
    schema = _resolve(schema, defs)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "null" or schema == {}:
        return True
    return any(_accepts_null(option, defs) for option in schema.get("anyOf", ()))


def _drop_nulls(value: Any, schema: Any, defs: dict[str, Any], depth: int) -> Any:
    schema = _resolve(schema, defs)
    if depth > 100 or not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is None:
            objects = [o for o in schema.get("anyOf", ()) if isinstance(_resolve(o, defs), dict)
                       and "properties" in _resolve(o, defs)]  # fmt: skip
            return _drop_nulls(value, objects[0], defs, depth + 1) if len(objects) == 1 else value
        required = set(schema.get("required", ()))
        out = {}
        for key, item in value.items():
            sub = props.get(key)
            if item is None and sub is not None and key not in required and not _accepts_null(sub, defs):
                continue
            out[key] = _drop_nulls(item, sub, defs, depth + 1) if sub is not None else item
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if items is None:
            arrays = [o for o in schema.get("anyOf", ()) if isinstance(_resolve(o, defs), dict)
                      and "items" in _resolve(o, defs)]  # fmt: skip
            items = _resolve(arrays[0], defs).get("items") if len(arrays) == 1 else None
        return [_drop_nulls(item, items, defs, depth + 1) for item in value] if items is not None else value
    return value


def _summary(doc: docstring_parser.Docstring) -> str:
    parts = [doc.short_description or "", doc.long_description or ""]
    return "\n\n".join(p for p in parts if p).strip()


def strict_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a pydantic JSON schema into OpenAI strict form.

    Strict function calling requires: no ``$ref`` (definitions inlined), every
    object with ``additionalProperties: false`` and all of its properties listed
    in ``required`` (an optional parameter becomes nullable instead), and no
    ``default``/``title`` keywords.
    """
    defs = schema.get("$defs", {})

    def resolve(node: Any, depth: int = 0, stack: tuple[str, ...] = ()) -> Any:
        if depth > 64:
            raise NotStrict("tool schema is nested too deeply for strict mode")
        if isinstance(node, list):
            return [resolve(item, depth + 1, stack) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"].rsplit("/", 1)[-1]
            if ref not in defs:  # e.g. "#/definitions/X" in a schema that did not come from pydantic
                raise NotStrict(f"reference {node['$ref']!r} is not under $defs")
            if ref in stack:
                raise NotStrict(f"recursive type {ref} cannot be inlined for strict mode")
            merged = {**copy.deepcopy(defs[ref]), **{k: v for k, v in node.items() if k != "$ref"}}
            return resolve(merged, depth + 1, (*stack, ref))
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("$defs", "title", "default"):
                continue
            if key == "properties" and isinstance(value, dict):
                # property *names* are data here, whatever they are called ("title", "default", ...)
                out[key] = {name: resolve(sub, depth + 1, stack) for name, sub in value.items()}
            else:
                out[key] = resolve(value, depth + 1, stack)
        if out.get("type") == "object" or "properties" in out:
            extra = out.get("additionalProperties")
            if not out.get("properties") and extra not in (None, False):
                raise NotStrict("free-form mappings (dict[str, ...]) cannot be expressed in strict mode")
            props = out.setdefault("properties", {})
            required = set(out.get("required", []))
            for prop_name, prop in list(props.items()):
                if prop_name not in required:
                    props[prop_name] = _nullable(prop)
            out["required"] = list(props)
            out["additionalProperties"] = False
        return out

    result: dict[str, Any] = resolve(schema)
    return result


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    description = schema.get("description")
    if description is not None:
        inner = {k: v for k, v in schema.items() if k != "description"}
        return {"description": description, **_nullable(inner)}
    if "anyOf" in schema:
        if not any(s.get("type") == "null" for s in schema["anyOf"]):
            schema = {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
        return schema
    if isinstance(schema.get("type"), str):
        if schema["type"] == "null":
            return schema
        return {"anyOf": [schema, {"type": "null"}]}
    return {"anyOf": [schema, {"type": "null"}]}
