"""Checking the caller's input files (``files=`` of `Sandbox.run` and `Session.run`)."""

from __future__ import annotations

from collections.abc import Mapping


def check_files(files: Mapping[str, bytes | str] | None) -> dict[str, bytes] | None:
    """`files` as a dict of relative path to bytes (str is UTF-8 encoded); TypeError/ValueError when invalid."""
    if files is None:
        return None
    if not isinstance(files, Mapping):
        raise TypeError(f"files must be a mapping of name to bytes, got {type(files).__name__}")
    checked: dict[str, bytes] = {}
    for name, data in files.items():
        if not isinstance(name, str) or not name or name.startswith("/") or "\0" in name:
            raise ValueError(f"file name {name!r} must be a non-empty relative path")
        if any(part in ("", ".", "..") for part in name.split("/")):
            raise ValueError(f"file name {name!r} must not contain empty, '.' or '..' parts")
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"file {name!r} must be bytes or str, got {type(data).__name__}")
        checked[name] = bytes(data)
    return checked
