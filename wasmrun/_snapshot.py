"""The bytes of a session snapshot (`Session.snapshot`, `Sandbox.restore`): header, checks, compressed body.

Layout: the magic line ``wasmrun-session``, one line of JSON naming the format,
the wasmrun version, the image and the image build (`Backend.image_id`), then
the zlib-compressed msgpack body. The header is checked before anything is
decompressed, so a snapshot from another version or image is refused with a
message that says which.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import msgspec

from ._errors import SnapshotError
from ._version import __version__

MAGIC = b"wasmrun-session\n"
FORMAT = 1
_MAX_SNAPSHOT = 4 << 30  # decompressed; a session's memory is at most 4 GiB (wasm32)


class SnapshotCall(msgspec.Struct, frozen=True):
    """One completed call of the history (see `wasmrun._session`)."""

    number: int
    code: str
    limits: dict[str, Any]
    files: dict[str, bytes] | None
    tools: list[tuple[str, str, bool, str]]
    error_type: str | None


class SnapshotBody(msgspec.Struct, frozen=True):
    """Everything a session needs to continue; `state` is the image's memory dump, if it made one."""

    limits: dict[str, Any]
    total_fuel: int
    lifetime_s: float
    idle_timeout_s: float
    seed: int
    calls: int
    fuel_used: int
    history: list[SnapshotCall]
    state: bytes | None
    # A deterministic session's virtual clock and entropy position (with `state`: the memory remembers it).
    virtual: tuple[int, int] | None = None


_BODY = msgspec.msgpack.Decoder(SnapshotBody)


def header(image: str, image_id: str) -> dict[str, Any]:
    return {"format": FORMAT, "wasmrun": __version__, "image": image, "image_id": image_id}


def pack(image: str, image_id: str, body: SnapshotBody) -> bytes:
    """The snapshot bytes of `body`."""
    head = json.dumps(header(image, image_id)).encode()
    return MAGIC + head + b"\n" + zlib.compress(msgspec.msgpack.encode(body), 1)


def unpack(data: bytes, image: str, image_id: str) -> SnapshotBody:
    """The body of snapshot `data` made for `image` build `image_id`; `SnapshotError` otherwise."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes from Session.snapshot(), got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise SnapshotError("not a wasmrun session snapshot (it does not start with the snapshot header)")
    line, sep, packed = data[len(MAGIC) :].partition(b"\n")
    try:
        found = json.loads(line) if sep else None
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise SnapshotError("the snapshot's header is damaged")
    expected = header(image, image_id)
    for key, what in (("format", "snapshot format"), ("wasmrun", "wasmrun version"), ("image", "image")):
        if found.get(key) != expected[key]:
            raise SnapshotError(
                f"this snapshot was made with {what} {found.get(key)!r}; this sandbox has {expected[key]!r}: "
                "a snapshot restores only into the same wasmrun version and image"
            )
    if found.get("image_id") != expected["image_id"]:
        raise SnapshotError(
            f"this snapshot was made with the {found.get('image')!r} image build {found.get('image_id')!r}; "
            f"this sandbox runs {expected['image_id']!r}: a snapshot restores only into the same image build"
        )
    try:
        unpacker = zlib.decompressobj()
        raw = unpacker.decompress(packed, _MAX_SNAPSHOT)
        if unpacker.unconsumed_tail:
            raise SnapshotError("the snapshot is larger than any session can be")
        return _BODY.decode(raw)
    except (zlib.error, msgspec.DecodeError) as exc:
        raise SnapshotError(f"the snapshot is damaged: {exc}") from None
