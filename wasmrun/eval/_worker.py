"""A worker process of the processes backend: ``python -m wasmrun.eval._worker``.

Protocol (one JSON document per line): the parent sends ``{"limits": {...}}``;
the worker answers ``{"ready": true}`` once its sandbox is warm; then, for each
line holding a batch ``[[index, program], ...]``, it answers
``[[index, [passed, result, category, error_type, duration_s]], ...]``. End of
input ends the worker. Anything else written to stdout by libraries goes to
stderr instead, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    """Serve batches on stdin/stdout until end of input."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer

    from .._limits import Limits
    from ._outcome import Checker

    def send(message: object) -> None:
        protocol.write(json.dumps(message).encode("utf-8") + b"\n")
        protocol.flush()

    first = requests.readline()
    if not first:
        return 0
    checker = Checker(Limits(**json.loads(first)["limits"]))
    checker.sandbox.run("pass")  # load the guest image before the first batch
    send({"ready": True})
    for line in requests:
        batch = json.loads(line)
        send([[index, list(checker.check(program))] for index, program in batch])
    checker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
