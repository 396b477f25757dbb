"""The ``wasmrun`` command line: run a Python file (or stdin) in the sandbox, evaluate samples, agents, images.

    $ wasmrun run script.py --timeout 2 --memory 128M
    $ echo 'sum(range(10))' | wasmrun run -
    45
    $ wasmrun run script.py --json

Exit status: 0 when the code ran to the end, 1 when it failed (any
``RunError.kind``), 2 for usage errors (bad option values, unreadable file),
3 when wasmrun itself could not run anything (e.g. a broken guest image).

One module per command (group); each adds itself to `app` when imported
below. The limit options every command shares are defined once in `_options`,
the way results and errors are printed in `_output`. Nothing else in wasmrun
imports this package.
"""

from __future__ import annotations

from . import _agent, _eval, _image, _mcp, _repl, _replay, _run  # noqa: F401 - each registers its commands on `app`
from ._app import EXIT_GUEST_FAILED, EXIT_HOST_ERROR, EXIT_OK, EXIT_USAGE, app
from ._options import SizeError, build_limits, parse_size
from ._output import print_json, print_result, render_error

__all__ = [
    "EXIT_GUEST_FAILED",
    "EXIT_HOST_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "SizeError",
    "app",
    "build_limits",
    "parse_size",
    "print_json",
    "print_result",
    "render_error",
]
