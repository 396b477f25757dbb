"""Tool schemas from signatures and docstrings: pydantic models, OpenAI strict definitions, guest specs.

A tool's schema is written once, as a typed Python signature with a docstring;
everything else (argument validation, the JSON schema a model sees, the stub
`import tools` shows in the guest) is derived from it here.
"""

from __future__ import annotations

import copy
import inspect
import json
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
        for param in signature.parameters.values():
            if param.kind in _UNSUPPORTED_KINDS:
                raise TypeError(f"tool {name!r}: *args/**kwargs parameters are not supported ({param})")
            if param.name not in hints:
                raise TypeError(f"tool {name!r}: parameter {param.name!r} needs a type annotation")
            annotation = hints[param.name]
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, pydantic.Field(default, description=param_docs.get(param.name)))
            spec: dict[str, Any] = {
                "name": param.name,
                "kind": "KEYWORD_ONLY" if param.kind is inspect.Parameter.KEYWORD_ONLY else "POSITIONAL_OR_KEYWORD",
                "annotation": inspect.formatannotation(annotation),
            }
            if default is not ...:
                try:
                    spec["default"] = json.loads(json.dumps(default))
                except (TypeError, ValueError):
                    spec["default_repr"] = repr(default)
            self.guest_params.append(spec)

        self.arguments: type[pydantic.BaseModel] = pydantic.create_model(
            f"{name}_arguments",
            __config__=pydantic.ConfigDict(extra="forbid"),
            **fields,
        )
        returns = hints.get("return", Any)
        self.returns: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any if returns is None else returns)
        self.return_annotation = inspect.formatannotation(returns)


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

    def resolve(node: Any, depth: int = 0) -> Any:
        if depth > 64:
            raise ValueError("tool schema is too deeply nested (recursive types are not supported)")
        if isinstance(node, list):
            return [resolve(item, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
            return resolve(merged, depth + 1)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("$defs", "title", "default"):
                continue
            out[key] = resolve(value, depth + 1)
        if out.get("type") == "object" or "properties" in out:
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
