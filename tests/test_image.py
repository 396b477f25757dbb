"""The guest image cache: integrity checks, private directories, concurrent first use."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import wasmrun
from wasmrun.images import _cache
from wasmrun.images.default import _build, _runtime


@pytest.fixture(scope="module")
def image_dir() -> Path:
    _runtime.shared_runtime()  # make sure the current image is built and cached
    return _cache.cache_root() / f"python-{_build.image_hash()[:24]}"


@pytest.fixture
def cache_copy(tmp_path: Path, image_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the current cache entry, used as WASMRUN_CACHE_DIR."""
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    target = root / image_dir.name
    shutil.copytree(image_dir, target, ignore=shutil.ignore_patterns("*.lock", "*.tmp"))
    target.chmod(0o700)
    monkeypatch.setenv("WASMRUN_CACHE_DIR", str(root))
    return target


def _cwasm(directory: Path) -> Path:
    """This wasmtime's compiled image in `directory` (a shared cache may also hold other versions' images)."""
    (path,) = directory.glob(f"guest-wasmtime{importlib.metadata.version('wasmtime')}-*.cwasm")
    return path


def test_intact_entry_is_verified(cache_copy: Path) -> None:
    assert _cache.verified(_cwasm(cache_copy))
    assert _cache.verified(_cwasm(cache_copy))  # second time through the stamp


def test_truncated_entry_is_detected(cache_copy: Path) -> None:
    cwasm = _cwasm(cache_copy)
    assert _cache.verified(cwasm)
    with cwasm.open("r+b") as f:
        f.truncate(cwasm.stat().st_size // 2)
    assert not _cache.verified(cwasm)


def test_corruption_with_same_size_and_mtime_is_detected(cache_copy: Path) -> None:
    cwasm = _cwasm(cache_copy)
    assert _cache.verified(cwasm)  # writes the stamp
    info = cwasm.stat()
    with cwasm.open("r+b") as f:  # flip bytes in the first sampled block
        f.seek(0)
        head = f.read(64)
        f.seek(0)
        f.write(bytes(b ^ 0xFF for b in head))
    os.utime(cwasm, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert not _cache.verified(cwasm)


def test_missing_sidecar_means_unverified(cache_copy: Path) -> None:
    cwasm = _cwasm(cache_copy)
    cwasm.with_name(cwasm.name + ".sha256").unlink()
    assert not _cache.verified(cwasm)


def test_corrupt_compiled_image_is_rebuilt_not_loaded(cache_copy: Path) -> None:
    cwasm = _cwasm(cache_copy)
    cwasm.write_bytes(b"\0" * 1024)  # garbage that must never be deserialized as native code
    engine = _runtime._engine()
    component = _build.load_component(engine, _runtime.CONFIG_TAG)
    assert component is not None
    assert _cache.verified(cwasm) and cwasm.stat().st_size > 1024


def test_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(wasmrun.ImageError, match="accessible to other users"):
        _cache.private_dir(shared)


def test_new_directories_are_private(tmp_path: Path) -> None:
    created = _cache.private_dir(tmp_path / "a" / "b")
    assert created.stat().st_mode & 0o777 == 0o700


@pytest.mark.slow
def test_two_processes_building_at_once_agree(tmp_path: Path) -> None:
    """Cold first use from two processes at once: one builds, the other waits; both run."""
    env = {**os.environ, "WASMRUN_CACHE_DIR": str(tmp_path / "cold")}
    code = "import wasmrun; r = wasmrun.run('6 * 7'); print(r.value)"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() == "42"
    (entry,) = (tmp_path / "cold").glob("python-*")
    assert _cache.verified(_cwasm(entry))
    assert not list(entry.glob("*.tmp"))
