"""One scientific-image guest: its store, exports, private host directory and scratch-quota bookkeeping."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import wasmtime

TRUSTED_QUOTA = 1 << 40  # warm-up and shim loading write nothing; the run's quota is set in `prepare`
MAX_ENTRIES = 10_000  # files and directories a run may create

# Preopens, in this order: wasmtime numbers them 3, 4, 5, 6.
FD_LIB, FD_MPL_DATA, FD_TMP, FD_WORK = 3, 4, 5, 6
GUEST_WORK = "/work"


class ScientificInstance:
    """One fresh guest: its store, exports, private host directory and per-run file bookkeeping."""

    def __init__(self, store: wasmtime.Store, root: Path) -> None:
        self.store = store
        self.root = root
        self.work = root / "work"
        self.tmp = root / "tmp"
        self.turn: wasmtime.Func | None = None
        self.alloc: wasmtime.Func | None = None
        self.memory: wasmtime.Memory | None = None
        self.forward: dict[str, wasmtime.Func] = {}
        self.request = b""
        self.shim_code = b""  # the shim's marshalled code objects, compiled once per process
        self.received = b""  # what the compile turn handed over
        self.inputs: dict[str, bytes] = {}
        self.input_dirs: frozenset[str] = frozenset()
        self.quota = TRUSTED_QUOTA
        self.baseline = 0  # bytes on disk that are not the run's own (inputs, font cache)
        self.usage = 0  # the run's bytes on disk at the last measurement
        self.pending = 0  # bytes written (or reserved) since then
        self.entries = 0
        self.fontlist_bytes = 0
        self.scratch = 0  # 64 guest bytes for the host's own WASI queries (see `_state.at_rest`)

    # -- scratch quota --------------------------------------------------------------
    def _measure(self) -> int:
        total = 0
        for top in (self.work, self.tmp):
            for dirpath, _dirnames, filenames in os.walk(top):
                for name in filenames:
                    try:
                        info = os.lstat(os.path.join(dirpath, name))
                    except OSError:
                        continue
                    total += info.st_size
        return max(0, total - self.baseline)

    def charge(self, size: int) -> bool:
        """Reserve `size` more bytes of scratch space; False when the quota would be passed."""
        if size <= 0:
            return True
        if self.usage + self.pending + size <= self.quota:
            self.pending += size
            return True
        self.usage, self.pending = self._measure(), 0
        if self.usage + size <= self.quota:
            self.pending = size
            return True
        return False

    def protected(self, fd: int, path: str) -> bool:
        """Whether `path` (relative to the preopen `fd`) names an input file or a directory holding one."""
        if fd != FD_WORK or not self.inputs:
            return False
        rel = posixpath.normpath(path.lstrip("/"))
        return rel in self.inputs or rel in self.input_dirs

    def host_path(self, fd: int, path: str) -> Path | None:
        base = self.work if fd == FD_WORK else self.tmp if fd == FD_TMP else None
        if base is None:
            return None
        rel = posixpath.normpath(path.lstrip("/"))
        return None if rel.startswith("..") else base / rel
