"""The default image: CPython 3.14 and its standard library, a componentize-py WASI preview-2 component.

* `_build`: build the component from ``python-wasm/`` and cache its compiled form.
* `_runtime`: the engine, linker and `ComponentBackend` (one per process).
* `_wasi`: wasmrun's own deny-by-default WASI preview-2 host (poll, clocks,
  streams, stdio, filesystem, sockets), so that blocking calls end at the deadline.
* `_vfs`: the per-run in-memory ``/work`` tree behind that host.
* `_fastcall`: lean ctypes callbacks for the two hot host imports.
"""

from __future__ import annotations

from ._runtime import CONFIG_TAG, ComponentBackend, Runtime, shared_runtime

__all__ = ["CONFIG_TAG", "ComponentBackend", "Runtime", "make_backend", "shared_runtime"]


def make_backend() -> ComponentBackend:
    """The default image's backend over the process-wide runtime (builds the image on first use)."""
    return ComponentBackend(shared_runtime())
