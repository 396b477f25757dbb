"""The scientific image's scratch roots: a killed process's root is swept by the next process, a live one's is kept.

The roots are made under ``tmp_path`` here (`ScratchRoot` takes the parent) so the
tests never touch other processes' roots in the real temp dir. The owner is a
real child process, killed with SIGKILL so that neither ``atexit`` nor ``finally``
runs, which is exactly the case the sweep exists for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import requires_scientific

from wasmrun import Sandbox
from wasmrun.images.scientific import _scratch
from wasmrun.images.scientific._scratch import LOCK_NAME, PREFIX, ScratchRoot, sweep

# The child makes its root and one instance directory, says where, then waits to be killed or told to go.
_OWNER = """
import sys
from pathlib import Path
from wasmrun.images.scientific._scratch import ScratchRoot
print(ScratchRoot(Path(sys.argv[1])).instance_dir(), flush=True)
sys.stdin.readline()
"""


class _Owner:
    """A child process owning a scratch root under ``parent``."""

    def __init__(self, parent: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _OWNER, str(parent)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self.proc.stdout is not None
        self.instance_dir = Path(self.proc.stdout.readline().decode().strip())
        self.root = self.instance_dir.parent

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.communicate(b"\n")


@pytest.fixture
def owners(tmp_path: Path) -> Iterator[list[_Owner]]:
    made: list[_Owner] = []
    yield made
    for owner in made:
        owner.stop()


def test_a_killed_process_root_is_swept_and_a_live_one_kept(tmp_path: Path, owners: list[_Owner]) -> None:
    owners.extend([_Owner(tmp_path), _Owner(tmp_path)])
    killed, alive = owners
    killed.kill()
    assert killed.instance_dir.is_dir()  # nothing ran at its death: the leak the sweep is for
    assert killed.root.name.startswith(PREFIX) and (killed.root / LOCK_NAME).is_file()

    mine = ScratchRoot(tmp_path)
    new_dir = mine.instance_dir()  # the first root of this process: sweeps first
    try:
        assert not killed.root.exists()
        assert alive.instance_dir.is_dir()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.root.name, new_dir.parent.name])
        assert sweep(tmp_path) == []  # our own root is locked by us, the child's by the child
    finally:
        mine.remove()
    assert not new_dir.parent.exists()


def test_a_root_is_swept_once_its_owner_ends_without_cleaning_up(tmp_path: Path, owners: list[_Owner]) -> None:
    owners.append(_Owner(tmp_path))
    (owner,) = owners
    assert sweep(tmp_path) == []
    owner.kill()
    assert sweep(tmp_path) == [owner.root]


def test_the_sweep_leaves_alone_what_it_cannot_prove_stale(tmp_path: Path) -> None:
    no_lock = tmp_path / f"{PREFIX}older"  # a root being set up, or an older wasmrun's directory
    no_lock.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / LOCK_NAME).touch()  # an unlocked lock file behind a link
    (tmp_path / f"{PREFIX}link").symlink_to(target)
    linked_lock = tmp_path / f"{PREFIX}linked-lock"
    linked_lock.mkdir()
    (linked_lock / LOCK_NAME).symlink_to(target / LOCK_NAME)
    not_a_dir = tmp_path / f"{PREFIX}file"
    not_a_dir.write_text("x")
    other_name = tmp_path / "unrelated"
    other_name.mkdir()
    (other_name / LOCK_NAME).touch()

    assert sweep(tmp_path) == []
    for path in (no_lock, target / LOCK_NAME, tmp_path / f"{PREFIX}link", linked_lock, not_a_dir, other_name):
        assert path.exists()


def test_the_sweep_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / f"{PREFIX}stale"
    stale.mkdir()
    (stale / LOCK_NAME).touch()

    def refuse(path: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(_scratch.shutil, "rmtree", refuse)
    assert sweep(tmp_path) == []
    assert sweep(tmp_path / "missing") == []
    assert stale.is_dir()


@requires_scientific
def test_instances_live_in_the_backends_locked_root() -> None:
    with Sandbox(image="scientific") as sb:
        seen = sb.run("import os; print(os.getcwd())")
        assert seen.ok, seen
        backend = sb._backend  # the host side of the directory is not public
        root = backend._scratch.path
        assert root is not None and root.name.startswith(PREFIX) and (root / LOCK_NAME).is_file()
        assert root not in sweep(root.parent)


def test_instances_made_at_once_share_one_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool thread and a caller can make instances at the same moment: one root, one lock, no orphan."""
    scratch = ScratchRoot(tmp_path)
    real_sweep = _scratch.sweep
    arrived = threading.Barrier(2, timeout=10)

    def slow_sweep(parent: Path) -> list[Path]:  # widen the window between "no root yet" and "root made"
        with contextlib.suppress(threading.BrokenBarrierError):
            arrived.wait(timeout=0.5)
        return real_sweep(parent)

    monkeypatch.setattr(_scratch, "sweep", slow_sweep)
    with ThreadPoolExecutor(2) as pool:
        dirs = list(pool.map(lambda _: scratch.instance_dir(), range(2)))
    try:
        roots = [p for p in tmp_path.iterdir() if p.name.startswith(PREFIX)]
        assert roots == [scratch.path]
        assert {d.parent for d in dirs} == {scratch.path}
    finally:
        scratch.remove()
