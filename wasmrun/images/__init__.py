"""The guest images a `Sandbox` can run, each a plug-in behind one `Backend` interface.

Every image lives in a subpackage of its own (``default/``, ``scientific/``)
that exports ``make_backend() -> Backend``; it depends on this package's
interface (`_backend`, `_pool`, `_cache`) and never on another image. Adding an
image is adding a folder and one line to `_REGISTRY`.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

# The default image's host code is imported with wasmrun itself, so that a process's first run
# pays only for loading the cached image, not for importing modules. (Other images stay lazy:
# most processes never use them.)
from . import default as _default
from ._backend import MAX_WASM_STACK, TICK_S, Backend, EpochTicker, GuestInstance, GuestTrap
from ._pool import InstancePool

__all__ = [
    "IMAGES",
    "MAX_WASM_STACK",
    "TICK_S",
    "Backend",
    "EpochTicker",
    "GuestInstance",
    "GuestTrap",
    "InstancePool",
    "backend",
]

#: Image name -> the module that provides its ``make_backend()``.
_REGISTRY: dict[str, str] = {
    "default": _default.__name__,
    "scientific": f"{__name__}.scientific",
}

IMAGES = tuple(_REGISTRY)
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
        if found is None:
            found = _backends[image] = importlib.import_module(_REGISTRY[image]).make_backend()
        return found
