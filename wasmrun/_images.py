"""The guest images a `Sandbox` can run, each behind one process-wide `Backend`."""

from __future__ import annotations

import threading
from typing import Any

from ._backend import Backend

# The default image's host code is imported with wasmrun itself, so that a process's first run
# pays only for loading the cached image, not for importing modules. (The scientific backend
# stays lazy: most processes never use it.)
from ._runtime import ComponentBackend, shared_runtime

IMAGES = ("default", "scientific")
"""Image names accepted by ``Sandbox(image=...)``."""

_backends: dict[str, Backend[Any]] = {}
_locks = {name: threading.Lock() for name in IMAGES}  # one per image: loading one never waits for another


def backend(image: str) -> Backend[Any]:
    """The process-wide backend of `image`, created on first use.

    The default image is built and compiled on first use (seconds); the
    scientific image is installed (downloaded, verified, compiled: about a
    minute, with a progress indicator) on first use unless already installed.
    Raises `ImageError` if the image cannot be made ready.
    """
    lock = _locks.get(image)
    if lock is None:
        raise ValueError(f"unknown image {image!r}; available: {', '.join(map(repr, IMAGES))}")
    with lock:
        found = _backends.get(image)
        if found is not None:
            return found
        made: Backend[Any]
        if image == "default":
            made = ComponentBackend(shared_runtime())
        elif image == "scientific":
            from ._scientific import ScientificBackend

            made = ScientificBackend()
        else:  # pragma: no cover - IMAGES and this function list the same names
            raise AssertionError(image)
        _backends[image] = made
        return made
