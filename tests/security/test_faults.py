"""Fault injection: full scratch space, a damaged or stale image cache, many runs on many threads.

(Tools that raise or hang and Ctrl-C are in test_tool_bridge.py and test_resources.py.)
In every case: a clear error, the host alive, the next run fine.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from wasmrun import Limits, Result, Sandbox
from wasmrun.images import _cache

REPO = Path(__file__).resolve().parents[2]


def test_full_scratch_is_a_clear_error(box: Sandbox, image: str, healthy: Callable[[], Result]) -> None:
    code = (
        "import errno\n"
        "try:\n"
        "    with open('big.bin', 'wb') as f:\n"
        "        for _ in range(64):\n"
        "            f.write(b'x' * 65536)\n"
        "except OSError as exc:\n"
        "    print(errno.errorcode[exc.errno])\n"
    )
    result = box.run(code, files={"input.txt": "x"}, limits=Limits(max_scratch_bytes=256 * 1024))
    assert result.ok, result.error
    if image == "scientific":
        assert result.stdout == "ENOSPC\n"
    else:  # wasi-libc reports every failed stream write as EIO; the host says why on stderr
        assert result.stdout == "EIO\n"
        assert "scratch quota is full (Limits.max_scratch_bytes = 262,144)" in result.stderr
    assert sum(len(data) for data in result.files.values()) <= 256 * 1024
    healthy()


def test_many_runs_on_many_threads(box: Sandbox) -> None:
    def one(i: int) -> tuple[int, Result]:
        return i, box.run(f"import sys\nprint({i})\nprint('e', {i}, file=sys.stderr)\n{i} * 2")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(48)))
    for i, result in results:
        assert result.ok, result.error
        assert (result.stdout, result.stderr, result.value) == (f"{i}\n", f"e {i}\n", str(i * 2))


# ----------------------------------------------------------------------------- the image cache


def _artifact(directory: Path, name: str, age_days: float) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / name
    path.write_bytes(b"compiled")
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text("x\n")
    when = time.time() - age_days * 86400
    for p in (path, sidecar):
        os.utime(p, (when, when))
    return path


def test_prune_removes_only_stale_entries(tmp_path: Path) -> None:
    keep = _artifact(tmp_path / "python-current", "guest-wasmtime50.0.1-a.cwasm", age_days=0)
    source = _artifact(tmp_path / "python-current", "guest.wasm", age_days=100)  # needed to recompile: kept
    old_engine = _artifact(tmp_path / "python-current", "guest-wasmtime49.0.0-a.cwasm", age_days=30)
    recent_other = _artifact(tmp_path / "python-other", "guest-wasmtime50.0.1-a.cwasm", age_days=1)
    stale_image = _artifact(tmp_path / "python-stale", "guest-wasmtime50.0.1-a.cwasm", age_days=30)
    sci = _artifact(tmp_path / "scientific-x", "python-snapshot-wasmtime49.0.0-a.cwasm", age_days=30)
    foreign = tmp_path / "python-not-ours"
    foreign.mkdir(mode=0o755)
    foreign.chmod(0o755)
    (foreign / "guest.cwasm").write_bytes(b"")
    os.utime(foreign / "guest.cwasm", (0, 0))

    removed = _cache.prune(tmp_path, keep)

    assert set(removed) == {old_engine, stale_image, stale_image.parent, sci}
    assert keep.exists() and source.exists() and recent_other.exists()
    assert not stale_image.parent.exists()
    assert not old_engine.with_name(old_engine.name + ".sha256").exists()  # sidecars go too
    assert (foreign / "guest.cwasm").exists()  # a directory wasmrun does not own is never touched


def test_loading_marks_the_artifact_used(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path / "python-x", "guest-wasmtime50.0.1-a.cwasm", age_days=30)
    _cache.mark_used(artifact)
    assert _cache.prune(tmp_path, tmp_path / "python-y" / "other.cwasm") == []


def test_prune_runs_at_most_daily(tmp_path: Path) -> None:
    stale = _artifact(tmp_path / "python-x", "guest-wasmtime49.0.0-a.cwasm", age_days=30)
    (tmp_path / "last-prune").touch()  # pruned a moment ago
    _cache.prune_soon(tmp_path, tmp_path / "python-y" / "keep.cwasm")
    assert stale.exists()
    os.utime(tmp_path / "last-prune", (0, 0))
    _cache.prune_soon(tmp_path, tmp_path / "python-y" / "keep.cwasm")
    assert not stale.exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to a read-only directory")
def test_read_only_cache_still_loads(tmp_path: Path) -> None:
    """A cache the process cannot write to (read-only home, shared image) still serves a built image."""
    from wasmrun.images.default import _build

    source = _cache.cache_root() / f"python-{_build.image_hash()[:24]}"
    copy = tmp_path / "cache" / source.name
    shutil.copytree(source, copy)
    for path in (copy, copy.parent):
        path.chmod(0o500)
    try:
        env = {**os.environ, "WASMRUN_CACHE_DIR": str(copy.parent), "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-c", "import wasmrun; print(wasmrun.run('6 * 7').value)"],
            capture_output=True, text=True, env=env, timeout=300, check=False,
        )  # fmt: skip
    finally:
        for path in (copy.parent, copy):
            path.chmod(0o700)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "42"


def test_a_failed_cache_write_leaves_nothing_behind(tmp_path: Path) -> None:
    """A write that fails half-way (full disk) publishes nothing, and an earlier good entry survives it."""
    directory = _cache.private_dir(tmp_path / "python-x")
    artifact = directory / "guest.cwasm"
    _cache.publish(artifact, lambda tmp: tmp.write_bytes(b"good"))
    assert _cache.verified(artifact)

    def half_then_full(tmp: Path) -> None:
        tmp.write_bytes(b"half of a new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError, match="No space left"):
        _cache.publish(artifact, half_then_full)
    with pytest.warns(RuntimeWarning, match="could not cache other.cwasm .*No space left.*Running from memory"):
        assert _cache.publish_or_warn(directory / "other.cwasm", half_then_full) is False
    assert sorted(p.name for p in directory.iterdir()) == ["guest.cwasm", "guest.cwasm.sha256", "guest.cwasm.stamp"]
    assert artifact.read_bytes() == b"good" and _cache.verified(artifact)


_FULL_CACHE = """
import resource, signal, warnings
import wasmrun
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing us
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
# While the image loads (compiles, then caches), no file may grow past 1 MiB: the 50 MB compiled image
# cannot be written. (Lifted before the runs: wasmtime's copy-on-write memory image is a memfd, which
# the limit would also stop, unlike a full cache disk.)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    sandbox = wasmrun.Sandbox(prewarm=0)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
with sandbox:
    print(sandbox.run("6 * 7").value, sandbox.run("print('next')").stdout.strip())
print([str(w.message) for w in caught if "could not cache" in str(w.message)])
"""


@pytest.mark.slow  # compiles the default image (~30-100 s)
@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_cache_that_cannot_be_written_runs_from_memory(tmp_path: Path) -> None:
    """The compiled image cannot be cached (a real file-size limit): a warning, runs from memory, nothing left."""
    from wasmrun.images.default import _build

    source = _cache.cache_root() / f"python-{_build.image_hash()[:24]}"
    copy = _cache.private_dir(tmp_path / "cache" / source.name)
    for name in ("guest.wasm", "guest.wasm.sha256"):  # the built component, not yet compiled for this engine
        shutil.copy2(source / name, copy / name)
    env = {**os.environ, "WASMRUN_CACHE_DIR": str(copy.parent), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _FULL_CACHE], capture_output=True, text=True, env=env, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "42 next", done.stdout + done.stderr[-2000:]
    assert "could not cache guest-wasmtime" in lines[1] and "Running from memory" in lines[1], lines[1]
    left = sorted(p.name for p in copy.iterdir() if not p.name.endswith(".stamp"))
    assert left == ["build.lock", "guest.wasm", "guest.wasm.sha256"], left  # no partial or unverified artifact


_REPLACED_HANDLER = """
import signal, warnings
import wasmrun
sandbox = wasmrun.Sandbox(prewarm=0)
# What ray.init does to the process: its own handler for the signal wasmtime's traps use.
signal.signal(signal.SIGILL, lambda *args: None)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    # A deadlock on _thread's own lock aborts the guest: wasm `unreachable`.
    trapped = sandbox.run("import _thread\\nlock = _thread.allocate_lock()\\nlock.acquire()\\nlock.acquire()")
print(trapped.error.kind, trapped.error.type)
print(sandbox.run("6 * 7").value)
print(len(caught), caught[0].category.__name__, "SIGILL" in str(caught[0].message))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the guard reads struct sigaction, whose layout is Linux's")
def test_replaced_fault_handlers_are_restored(tmp_path: Path) -> None:
    """Without the guard the trap re-enters the replaced handler forever: the child hangs until killed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _REPLACED_HANDLER], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:3] == ["internal GuestCrash", "42", "1 RuntimeWarning True"]
