"""The guest image: build it once, cache the compiled artifact, load it fast.

The image is CPython-on-WASI built by componentize-py from `python-wasm/`
(WIT world + guest shim). Building takes a few seconds and compiling the
component to native code a few more, so both happen once per machine and the
result is cached in the user's cache directory:

    <cache>/wasmrun/python-<image hash>/guest.wasm
    <cache>/wasmrun/python-<image hash>/guest-<wasmtime version>-<engine config>.cwasm
    ... each with a ``.sha256`` sidecar written after the file itself.

* The image hash covers the WIT world, the guest shim and the componentize-py
  version, so editing the shim or upgrading componentize-py builds a new image.
* The compiled file is native code, so it is only ever loaded from a directory
  wasmrun created itself with mode 0700 and still owns, and only after its
  SHA-256 matches the sidecar (checked in full once, then through a cheap
  stamp; see `_verified`): a corrupt or truncated entry is rebuilt.
* Writers take a file lock and publish with an atomic rename, so two processes
  starting at once never see (or produce) a half-written file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import filelock
import platformdirs
import wasmtime
from wasmtime.component import Component

from ._errors import ImageError

_PACKAGE_DIR = Path(__file__).resolve().parent


def source_dir() -> Path:
    """Where the guest sources live: inside the wheel, or at the top of a checkout."""
    for candidate in (_PACKAGE_DIR / "_python_wasm", _PACKAGE_DIR.parent / "python-wasm"):
        if (candidate / "wit" / "world.wit").is_file():
            return candidate
    raise ImageError("wasmrun's guest sources (python-wasm/) are missing from this installation; reinstall wasmrun")


def _source_files(src: Path) -> list[Path]:
    return sorted(p for p in (src / "wit").rglob("*.wit")) + sorted((src / "guest").rglob("*.py"))


def image_hash() -> str:
    """Identify the guest image by its sources and its builder's version."""
    src = source_dir()
    digest = hashlib.sha256()
    digest.update(importlib.metadata.version("componentize-py").encode())
    for path in _source_files(src):
        digest.update(path.relative_to(src).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_root() -> Path:
    """``$WASMRUN_CACHE_DIR`` if set, else the platform's user cache dir for wasmrun."""
    override = os.environ.get("WASMRUN_CACHE_DIR")
    return Path(override) if override else platformdirs.user_cache_path("wasmrun")


def private_dir(path: Path) -> Path:
    """Create `path` (mode 0700) or check that an existing one is ours and private."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ImageError(f"cache directory {path} belongs to another user; refusing to load code from it")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ImageError(
            f"cache directory {path} is accessible to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            "refusing to load native code from it. Remove it or set WASMRUN_CACHE_DIR."
        )
    return path


def _sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


_SAMPLES = 64
_SAMPLE_BYTES = 4096


def _sampled_digest(path: Path, size: int) -> str:
    """SHA-256 over 64 evenly spaced 4 KiB blocks: a cheap check against in-place corruption."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for i in range(_SAMPLES):
            f.seek(size * i // _SAMPLES)
            digest.update(f.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def _verified(path: Path) -> bool:
    """True if `path` matches its SHA-256 sidecar.

    A full hash of a ~55 MB compiled image costs ~40 ms, most of a process's
    start-up, so after one full check a ``.stamp`` records the file's size,
    inode, mtime and a sampled digest. Later loads check the stamp (under 1 ms)
    and fall back to the full hash if anything differs: a truncated, replaced
    or visibly corrupted file is still caught, and then rebuilt.
    """
    sidecar = path.with_name(path.name + ".sha256")
    stamp_path = path.with_name(path.name + ".stamp")
    try:
        expected = sidecar.read_text().strip()
        info = path.stat()
    except OSError:
        return False
    try:
        stamp = json.loads(stamp_path.read_text())
        if (
            stamp["sha256"] == expected
            and stamp["size"] == info.st_size
            and stamp["ino"] == info.st_ino
            and stamp["mtime_ns"] == info.st_mtime_ns
            and stamp["sampled"] == _sampled_digest(path, info.st_size)
        ):
            return True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if _sha256_file(path) != expected:
        return False
    stamp = {
        "sha256": expected,
        "size": info.st_size,
        "ino": info.st_ino,
        "mtime_ns": info.st_mtime_ns,
        "sampled": _sampled_digest(path, info.st_size),
    }
    tmp = stamp_path.with_name(stamp_path.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(stamp))
        os.replace(tmp, stamp_path)
    except OSError:
        tmp.unlink(missing_ok=True)
    return True


def _write(path: Path, data: bytes | bytearray) -> None:
    path.write_bytes(data)


def _publish(path: Path, write: Callable[[Path], None]) -> None:
    """Write via `write(tmp)`, then atomically rename into place, then write the sidecar."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        digest = _sha256_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    sidecar = path.with_name(path.name + ".sha256")
    sidecar_tmp = sidecar.with_name(sidecar.name + ".tmp")
    sidecar_tmp.write_text(digest + "\n")
    os.replace(sidecar_tmp, sidecar)


def build_component(out: Path, *, log: Callable[[str], None] | None = None) -> None:
    """Run componentize-py on python-wasm/ and write the guest component to `out`."""
    src = source_dir()
    cmd = [
        sys.executable,
        "-c",
        "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()",
        "-q",
        "-d", str(src / "wit"),
        "-w", "runner",
        "componentize",
        "-p", str(src / "guest"),
        "app",
        "-o", str(out),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=src, check=False)
    if proc.returncode != 0:
        raise ImageError(f"building the guest image failed (componentize-py exit {proc.returncode}):\n{proc.stderr}")
    if log:
        log(f"built guest component in {time.perf_counter() - started:.1f}s")


def load_component(engine: wasmtime.Engine, config_tag: str, *, log: Callable[[str], None] | None = None) -> Component:
    """The compiled guest component for `engine`, building and compiling it if needed."""
    directory = private_dir(cache_root() / f"python-{image_hash()[:24]}")
    wasm = directory / "guest.wasm"
    cwasm = directory / f"guest-wasmtime{importlib.metadata.version('wasmtime')}-{config_tag}.cwasm"

    if _verified(cwasm):
        return Component.deserialize_file(engine, str(cwasm))

    with filelock.FileLock(str(directory / "build.lock"), timeout=600):
        if _verified(cwasm):  # another process finished while we waited
            return Component.deserialize_file(engine, str(cwasm))
        if not _verified(wasm):
            _publish(wasm, lambda tmp: build_component(tmp, log=log))
        started = time.perf_counter()
        component = Component.from_file(engine, str(wasm))
        if log:
            log(f"compiled guest component in {time.perf_counter() - started:.1f}s")
        serialized = component.serialize()
        _publish(cwasm, lambda tmp: _write(tmp, serialized))
        return component
