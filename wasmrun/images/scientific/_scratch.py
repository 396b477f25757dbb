"""The scientific instances' private host directories, and the sweep of those that dead processes left.

Every instance gets a private host directory (its ``/work`` and ``/tmp``). A
backend makes one scratch root per process, ``<tempdir>/wasmrun-sci-XXXXXXXX``
(``tempfile.mkdtemp``: mode 0700, ours), on its first instance, and each
instance's directory inside it. Closing an instance removes its directory and
an ``atexit`` hook removes the root, but neither runs when the process is
killed (SIGKILL, a segfault, the OOM killer), and nothing else would ever
remove what it left. So making a root first sweeps the roots of dead processes.

How a root's owner is known: the root holds ``owner.lock``, which the owning
process keeps ``flock``-ed (exclusive, non-blocking probe) for as long as it
lives; the kernel drops the lock when the process dies, however it dies. A root
whose lock another process can take is stale. A pid in the name was the other
choice and is worse: pids are reused (a dead owner's pid given to an unrelated
live process would keep its root forever) and "is this pid alive" says nothing
about whether it is still the same process. The lock file is created under a
temporary name, locked, and only then renamed to ``owner.lock``, so there is no
moment at which ``owner.lock`` exists unlocked in a live root; a root without
``owner.lock`` (one being set up, or one from an older wasmrun that made a root
per instance) is never touched. A forked child shares its parent's lock (same
open file description), so a root is kept while either lives; wasmrun's worker
processes are spawned, not forked.

The sweep only considers entries named ``wasmrun-sci-*`` that are real
directories (``lstat``; symbolic links are never followed) owned by this user;
it opens the lock file with ``O_NOFOLLOW`` and removes with `shutil.rmtree`,
which does not follow links inside the tree. It is best effort: any error is
logged at debug level (logger ``wasmrun.scientific``) and never fails a run.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

logger = logging.getLogger("wasmrun.scientific")

PREFIX = "wasmrun-sci-"
LOCK_NAME = "owner.lock"


def _lock_is_free(root: str) -> bool:
    """True if no live process holds ``root``'s ``owner.lock``; False if one does or there is no such file."""
    try:
        fd = os.open(os.path.join(root, LOCK_NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also releases our probe's lock: nobody will want it again
    return True


def sweep(parent: Path) -> list[Path]:
    """Remove the scratch roots under ``parent`` whose owning process is dead; return what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError as exc:
        logger.debug("not sweeping %s: %s", parent, exc)
        return removed
    uid = os.getuid()
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or not _lock_is_free(entry.path):
                continue
            shutil.rmtree(entry.path)
            removed.append(Path(entry.path))
            logger.debug("removed %s, left by a dead process", entry.path)
        except OSError as exc:  # e.g. another process swept it first
            logger.debug("not removing %s: %s", entry.path, exc)
    return removed


class ScratchRoot:
    """This process's directory of instance directories, made (after a sweep) on first use, removed at exit."""

    def __init__(self, parent: Path | None = None) -> None:
        self.parent = parent
        self.path: Path | None = None
        self._lock_fd = -1
        self._making = threading.Lock()  # the pool thread and a caller may make the first instances together

    def instance_dir(self) -> Path:
        """A new private directory (mode 0700) for one instance."""
        with self._making:
            if self.path is None:
                self.path = self._make()
            root = self.path
        return Path(tempfile.mkdtemp(dir=root))

    def _make(self) -> Path:
        parent = Path(self.parent if self.parent is not None else tempfile.gettempdir())
        sweep(parent)
        root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        pending = root / (LOCK_NAME + ".new")
        fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else can hold it
            os.rename(pending, root / LOCK_NAME)
        except BaseException:
            os.close(fd)
            shutil.rmtree(root, ignore_errors=True)
            raise
        self._lock_fd = fd
        atexit.register(self.remove)
        return root

    def remove(self) -> None:
        """Remove the root and everything in it, then release the lock (idempotent)."""
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
