"""wasmrun's private cache of compiled guest images, shared by every image.

Compiling a guest to native code takes seconds (default image) to a minute
(scientific image), so each image compiles once per machine and keeps the
result under `cache_root()`:

* Native code is only ever loaded from a directory wasmrun created itself with
  mode 0700 and still owns (`private_dir`), and only after its SHA-256 matches
  the sidecar written next to it (checked in full once, then through a cheap
  stamp; see `verified`): a corrupt or truncated entry is rebuilt.
* Writers take a file lock and publish with an atomic rename (`publish`), so
  two processes starting at once never see (or produce) a half-written file.

The guest sources every image shares (`python-wasm/`: the WIT world and the
guest shim) are found by `source_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import platformdirs

from .._errors import ImageError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # wasmrun/


def source_dir() -> Path:
    """Where the guest sources live: inside the wheel, or at the top of a checkout."""
    for candidate in (_PACKAGE_DIR / "_python_wasm", _PACKAGE_DIR.parent / "python-wasm"):
        if (candidate / "wit" / "world.wit").is_file():
            return candidate
    raise ImageError("wasmrun's guest sources (python-wasm/) are missing from this installation; reinstall wasmrun")


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


def sha256_file(path: Path) -> str:
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


def verified(path: Path) -> bool:
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
    if sha256_file(path) != expected:
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


def publish(path: Path, write: Callable[[Path], object]) -> None:
    """Write via `write(tmp)` and its SHA-256 sidecar, then atomically rename both into place.

    Every byte is written before anything is renamed, so a write that fails (a
    full disk, a file-size limit, a read-only directory) raises `OSError` and
    leaves nothing behind: no partial artifact, no stray sidecar.
    """
    sidecar = path.with_name(path.name + ".sha256")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    sidecar_tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        sidecar_tmp.write_text(sha256_file(tmp) + "\n")
        os.replace(tmp, path)
        os.replace(sidecar_tmp, sidecar)
    finally:
        tmp.unlink(missing_ok=True)
        sidecar_tmp.unlink(missing_ok=True)


def publish_or_warn(path: Path, write: Callable[[Path], object]) -> bool:
    """`publish`, for an artifact the caller already holds in memory: failing to cache it is not fatal.

    A cache that cannot be written (full disk, quota, read-only) gives a
    `RuntimeWarning` and False; the caller runs from memory, and the next
    process compiles again.
    """
    try:
        publish(path, write)
    except OSError as exc:
        warnings.warn(
            f"wasmrun could not cache {path.name} in {path.parent}: {exc.strerror or exc}. "
            "Running from memory; every new process compiles the image again until the cache can be "
            "written (free some space, or set WASMRUN_CACHE_DIR).",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


# -- pruning ---------------------------------------------------------------------------
#
# Every new guest image (a wasmrun upgrade, edited guest sources) and every new wasmtime
# version or engine configuration adds artifacts of 50-350 MB. Several checkouts or
# virtualenvs may share one cache, so an entry is stale only once nothing has loaded it
# for `STALE_AFTER_S`: each load marks its artifact used (`mark_used`), and at most once a
# day a load or build removes what has not been used for that long (`prune_soon`).

STALE_AFTER_S = 14 * 24 * 3600
_PRUNE_EVERY_S = 24 * 3600
_ARTIFACT_SUFFIXES = (".cwasm", ".wasm")


def mark_used(artifact: Path) -> None:
    """Record that `artifact` was loaded now (its sidecar's mtime; the artifact's own is part of its stamp)."""
    try:
        os.utime(artifact.with_name(artifact.name + ".sha256"))
    except OSError:
        pass


def _last_used(artifact: Path) -> float:
    for candidate in (artifact.with_name(artifact.name + ".sha256"), artifact):
        try:
            return candidate.stat().st_mtime
        except OSError:
            continue
    return 0.0


def _remove_artifact(artifact: Path) -> None:
    for path in (artifact, *(artifact.with_name(artifact.name + s) for s in (".sha256", ".stamp"))):
        path.unlink(missing_ok=True)


def prune(root: Path, keep: Path, *, now: float | None = None) -> list[Path]:
    """Remove cached artifacts under `root` unused for `STALE_AFTER_S`, never `keep`; return what was removed.

    Only wasmrun's own entries are touched: compiled or built artifacts (``*.cwasm``,
    ``*.wasm`` with their sidecars) in `root`'s private subdirectories, and a
    default-image directory (``python-<hash>``) once it holds no recent artifact.
    """
    cutoff = (time.time() if now is None else now) - STALE_AFTER_S
    removed: list[Path] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return removed
    for directory in entries:
        if directory.is_symlink() or not directory.is_dir():
            continue
        try:
            private_dir(directory)
        except ImageError:
            continue  # not ours: leave it alone
        artifacts = [p for p in directory.iterdir() if p.suffix in _ARTIFACT_SUFFIXES and not p.is_symlink()]
        for artifact in artifacts:
            if directory == keep.parent and artifact.suffix != ".cwasm":
                continue  # the current image's source artifact: needed to compile for another engine
            if artifact != keep and _last_used(artifact) < cutoff:
                _remove_artifact(artifact)
                removed.append(artifact)
        left = [p for p in artifacts if p.exists()]
        if directory.name.startswith("python-") and keep.parent != directory and not left:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def prune_soon(root: Path, keep: Path) -> None:
    """`prune` at most once per `_PRUNE_EVERY_S` (a marker file's mtime); never raises."""
    marker = root / "last-prune"
    try:
        if time.time() - marker.stat().st_mtime < _PRUNE_EVERY_S:
            return
    except OSError:
        pass
    try:
        marker.touch()
        prune(root, keep)
    except OSError:
        pass


def loaded(artifact: Path) -> None:
    """Call after loading `artifact` from the cache: mark it used, and now and then prune the cache."""
    mark_used(artifact)
    prune_soon(cache_root(), artifact)
