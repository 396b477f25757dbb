"""An in-memory filesystem for one run: read-only input files plus a scratch area under a quota.

The guest sees a single directory, ``/work`` (also its working directory), that
holds the caller's input files. Input files are read-only. New files (and
directories) may be created next to them; every byte they hold counts against
the run's scratch quota, and what they hold at the end of the run comes back in
``Result.files``. Nothing here touches the host's real filesystem.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass, field
from typing import Any

from wasmtime.component import Record

ROOT = "/work"


def _record(**fields: Any) -> Record:
    """A WIT record for wasmtime-py; field names use ``_`` where WIT uses ``-``."""
    record = Record()
    record.__dict__.update({name.replace("_", "-"): value for name, value in fields.items()})
    return record


class FsError(Exception):
    """A WASI filesystem error; `code` is a `wasi:filesystem/types.error-code` case name."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Node:
    is_dir: bool
    data: bytearray = field(default_factory=bytearray)
    readonly: bool = False
    mtime_ns: int = field(default_factory=time.time_ns)


@dataclass
class _Open:
    path: str
    readable: bool
    writable: bool


@dataclass
class _Stream:
    path: str
    offset: int
    append: bool = False


class VirtualFS:
    """The files of one run. Methods raise `FsError` with a WASI error-code name."""

    def __init__(self, inputs: dict[str, bytes], quota_bytes: int) -> None:
        self.quota_bytes = quota_bytes
        self.quota_reported = False  # the guest was told (on stderr) that a write hit the quota
        self._nodes: dict[str, _Node] = {"": _Node(is_dir=True, readonly=True)}
        self._inputs: set[str] = {""}
        self._open: dict[int, _Open] = {1: _Open("", readable=True, writable=True)}
        self._streams: dict[int, _Stream] = {}
        self._dirlists: dict[int, list[tuple[str, bool]]] = {}
        self._next = 100
        self.used_bytes = 0
        self.add_inputs(inputs)

    def add_inputs(self, inputs: dict[str, bytes]) -> None:
        """Add read-only input files (a session's later call brings more); one replaces a scratch file of its name.

        Raises `FsError` ("exist") when a name is taken by a directory, or a file
        stands where one of its parent directories should be.
        """
        for name, data in inputs.items():
            path = self._normalise("", name)
            parents = []
            parent = posixpath.dirname(path)
            while parent:
                parents.append(parent)
                parent = posixpath.dirname(parent)
            for parent in reversed(parents):
                node = self._nodes.get(parent)
                if node is None:
                    self._nodes[parent] = _Node(is_dir=True, readonly=True)
                    self._inputs.add(parent)
                elif not node.is_dir:
                    raise FsError("exist")
            old = self._nodes.get(path)
            if old is not None:
                if old.is_dir:
                    raise FsError("exist")
                if path not in self._inputs:
                    self.used_bytes -= len(old.data)
            self._nodes[path] = _Node(is_dir=False, data=bytearray(data), readonly=True)
            self._inputs.add(path)

    # -- bookkeeping -----------------------------------------------------------
    def _rep(self) -> int:
        self._next += 1
        return self._next

    @staticmethod
    def _normalise(base: str, path: str) -> str:
        if not isinstance(path, str) or not path or "\0" in path:
            raise FsError("invalid")
        if path.startswith("/"):
            raise FsError("not-permitted")
        joined = posixpath.normpath(posixpath.join("/", base, path)).lstrip("/")
        if joined == ".":
            joined = ""
        if joined.startswith(".."):
            raise FsError("not-permitted")
        return joined

    def _desc(self, rep: int) -> _Open:
        try:
            return self._open[rep]
        except KeyError:
            raise FsError("bad-descriptor") from None

    def _node(self, path: str) -> _Node:
        try:
            return self._nodes[path]
        except KeyError:
            raise FsError("no-entry") from None

    def _charge(self, delta: int) -> None:
        if self.used_bytes + delta > self.quota_bytes:
            raise FsError("insufficient-space")
        self.used_bytes += delta

    def _write_at(self, path: str, offset: int, data: bytes) -> int:
        node = self._node(path)
        if node.readonly or node.is_dir:
            raise FsError("not-permitted" if node.readonly else "is-directory")
        end = offset + len(data)
        self._charge(max(0, end - len(node.data)))
        if offset > len(node.data):
            node.data.extend(b"\0" * (offset - len(node.data)))
        node.data[offset:end] = data
        node.mtime_ns = time.time_ns()
        return len(data)

    # -- descriptors -------------------------------------------------------------
    def preopens(self) -> list[tuple[int, str]]:
        return [(1, ROOT)]

    def drop_descriptor(self, rep: int) -> None:
        if rep != 1:
            self._open.pop(rep, None)

    def open_at(self, rep: int, path: str, oflags: set[str], dflags: set[str]) -> int:
        base = self._desc(rep)
        target = self._normalise(base.path, path)
        node = self._nodes.get(target)
        writable = "write" in dflags
        if node is None:
            if "create" not in oflags:
                raise FsError("no-entry")
            parent = self._nodes.get(posixpath.dirname(target))
            if parent is None or not parent.is_dir:
                raise FsError("no-entry")
            node = self._nodes[target] = _Node(is_dir=False)
        elif "exclusive" in oflags and "create" in oflags:
            raise FsError("exist")
        if "directory" in oflags and not node.is_dir:
            raise FsError("not-directory")
        if node.is_dir and writable:
            raise FsError("is-directory")
        if (writable or "truncate" in oflags) and node.readonly:
            raise FsError("not-permitted")
        if "truncate" in oflags and not node.is_dir:
            self.used_bytes -= len(node.data)
            node.data.clear()
        new = self._rep()
        self._open[new] = _Open(target, readable=True, writable=writable)
        return new

    def _stat(self, path: str) -> Any:
        node = self._node(path)
        when = _record(seconds=node.mtime_ns // 1_000_000_000, nanoseconds=node.mtime_ns % 1_000_000_000)
        return _record(
            type="directory" if node.is_dir else "regular-file",
            link_count=1,
            size=0 if node.is_dir else len(node.data),
            data_access_timestamp=when,
            data_modification_timestamp=when,
            status_change_timestamp=when,
        )

    def stat(self, rep: int) -> Any:
        return self._stat(self._desc(rep).path)

    def stat_at(self, rep: int, path: str) -> Any:
        return self._stat(self._normalise(self._desc(rep).path, path))

    def metadata_hash(self, path: str) -> Any:
        return _record(lower=hash(path) & 0xFFFF_FFFF_FFFF_FFFF, upper=0)

    def get_flags(self, rep: int) -> set[str]:
        desc = self._desc(rep)
        return {"read", "write"} if desc.writable else {"read"}

    def read(self, rep: int, length: int, offset: int) -> tuple[bytes, bool]:
        node = self._node(self._desc(rep).path)
        if node.is_dir:
            raise FsError("is-directory")
        chunk = bytes(node.data[offset : offset + min(length, 1 << 20)])
        return chunk, offset + len(chunk) >= len(node.data)

    def write(self, rep: int, data: bytes, offset: int) -> int:
        desc = self._desc(rep)
        if not desc.writable:
            raise FsError("bad-descriptor")
        return self._write_at(desc.path, offset, data)

    def set_size(self, rep: int, size: int) -> None:
        desc = self._desc(rep)
        node = self._node(desc.path)
        if node.readonly or not desc.writable:
            raise FsError("not-permitted")
        delta = size - len(node.data)
        self._charge(max(0, delta))
        if delta < 0:
            self.used_bytes += delta
            del node.data[size:]
        else:
            node.data.extend(b"\0" * delta)

    def create_directory_at(self, rep: int, path: str) -> None:
        target = self._normalise(self._desc(rep).path, path)
        if target in self._nodes:
            raise FsError("exist")
        if not self._node(posixpath.dirname(target)).is_dir:
            raise FsError("not-directory")
        self._nodes[target] = _Node(is_dir=True)

    def unlink_file_at(self, rep: int, path: str) -> None:
        target = self._normalise(self._desc(rep).path, path)
        node = self._node(target)
        if node.is_dir:
            raise FsError("is-directory")
        if node.readonly:
            raise FsError("not-permitted")
        self.used_bytes -= len(node.data)
        del self._nodes[target]

    def remove_directory_at(self, rep: int, path: str) -> None:
        target = self._normalise(self._desc(rep).path, path)
        node = self._node(target)
        if not node.is_dir:
            raise FsError("not-directory")
        if node.readonly or target == "":
            raise FsError("not-permitted")
        if any(p.startswith(target + "/") for p in self._nodes):
            raise FsError("not-empty")
        del self._nodes[target]

    def rename_at(self, rep: int, old: str, new_rep: int, new: str) -> None:
        """POSIX ``rename``: a file or a whole directory; what is open under it follows it.

        Input files and the directories that hold them stay where they are
        (``not-permitted``). A file may replace a file, a directory an empty
        directory; a directory cannot move into itself.
        """
        src = self._normalise(self._desc(rep).path, old)
        dst = self._normalise(self._desc(new_rep).path, new)
        node = self._node(src)
        moved = [src, *(p for p in self._nodes if p.startswith(src + "/"))] if node.is_dir else [src]
        if any(self._nodes[p].readonly for p in moved):
            raise FsError("not-permitted")
        if not self._node(posixpath.dirname(dst)).is_dir:
            raise FsError("not-directory")
        if src == dst:
            return
        if dst.startswith(src + "/"):
            raise FsError("invalid")
        existing = self._nodes.get(dst)
        if existing is not None:
            if existing.readonly:
                raise FsError("not-permitted")
            if existing.is_dir != node.is_dir:
                raise FsError("is-directory" if existing.is_dir else "not-directory")
            if existing.is_dir and any(p.startswith(dst + "/") for p in self._nodes):
                raise FsError("not-empty")
            self.used_bytes -= len(existing.data)
        for path in moved:
            self._nodes[dst + path[len(src) :]] = self._nodes.pop(path)
        handles: list[_Open | _Stream] = [*self._open.values(), *self._streams.values()]
        for handle in handles:
            if handle.path == src or handle.path.startswith(src + "/"):
                handle.path = dst + handle.path[len(src) :]

    def read_directory(self, rep: int) -> int:
        base = self._desc(rep).path
        if not self._node(base).is_dir:
            raise FsError("not-directory")
        prefix = base + "/" if base else ""
        entries = [
            (p[len(prefix) :], n.is_dir)
            for p, n in sorted(self._nodes.items())
            if p and p.startswith(prefix) and "/" not in p[len(prefix) :]
        ]
        new = self._rep()
        self._dirlists[new] = entries
        return new

    def read_directory_entry(self, rep: int) -> Any:
        entries = self._dirlists.get(rep)
        if not entries:
            return None
        name, is_dir = entries.pop(0)
        return _record(type="directory" if is_dir else "regular-file", name=name)

    def drop_dirlist(self, rep: int) -> None:
        self._dirlists.pop(rep, None)

    # -- streams over files ------------------------------------------------------
    def open_stream(self, rep: int, offset: int, *, write: bool, append: bool = False) -> int:
        desc = self._desc(rep)
        if write and not desc.writable:
            raise FsError("bad-descriptor")
        if self._node(desc.path).is_dir:
            raise FsError("is-directory")
        new = self._rep()
        self._streams[new] = _Stream(desc.path, offset, append)
        return new

    def has_stream(self, rep: int) -> bool:
        return rep in self._streams

    def drop_stream(self, rep: int) -> None:
        self._streams.pop(rep, None)

    def stream_read(self, rep: int, length: int) -> bytes | None:
        stream = self._streams[rep]
        data = self._node(stream.path).data
        if stream.offset >= len(data):
            return None
        chunk = bytes(data[stream.offset : stream.offset + min(length, 1 << 20)])
        stream.offset += len(chunk)
        return chunk

    def stream_write(self, rep: int, data: bytes) -> None:
        stream = self._streams[rep]
        if stream.append:
            stream.offset = len(self._node(stream.path).data)
        stream.offset += self._write_at(stream.path, stream.offset, data)

    # -- results -------------------------------------------------------------------
    def outputs(self) -> dict[str, bytes]:
        """Files the guest created or wrote, by path relative to /work."""
        return {
            path: bytes(node.data)
            for path, node in sorted(self._nodes.items())
            if not node.is_dir and path not in self._inputs
        }
