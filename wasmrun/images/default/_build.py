"""The default image: build the guest component with componentize-py, compile it once, load it fast.

The image is CPython-on-WASI built by componentize-py from `python-wasm/`
(WIT world + guest shim) and cached (see `.._cache`):

    <cache>/wasmrun/python-<image hash>/guest.wasm
    <cache>/wasmrun/python-<image hash>/guest-<wasmtime version>-<engine config>.cwasm
    ... each with a ``.sha256`` sidecar written after the file itself.

The image hash covers the WIT world, the guest shim and the componentize-py
version, so editing the shim or upgrading componentize-py builds a new image.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import filelock
import wasmtime
from wasmtime.component import Component

from ..._errors import ImageError
from .._cache import cache_root, loaded, private_dir, publish, publish_or_warn, source_dir, verified


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

    if verified(cwasm):
        component = Component.deserialize_file(engine, str(cwasm))
        loaded(cwasm)
        return component

    with filelock.FileLock(str(directory / "build.lock"), timeout=600):
        if verified(cwasm):  # another process finished while we waited
            return Component.deserialize_file(engine, str(cwasm))
        if not verified(wasm):
            publish(wasm, lambda tmp: build_component(tmp, log=log))
        started = time.perf_counter()
        component = Component.from_file(engine, str(wasm))
        if log:
            log(f"compiled guest component in {time.perf_counter() - started:.1f}s")
        serialized = component.serialize()
        if publish_or_warn(cwasm, lambda tmp: tmp.write_bytes(serialized)):
            loaded(cwasm)
        return component
