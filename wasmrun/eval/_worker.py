"""A worker process of the processes backend: ``python -m wasmrun.eval._worker``.

Protocol (length-prefixed msgpack messages, `wasmrun._workers.Channel`; the
types are `_processes.ToEvalWorker` and `FromEvalWorker`): the parent sends the
`Limits` as a dict; the worker answers `Ready` once its sandbox is warm; then,
for each batch ``[[index, program], ...]``, it answers
``[[index, [passed, result, category, error_type, duration_s]], ...]``. End of
input ends the worker. Anything else written to stdout by libraries goes to
stderr instead, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import sys

from .._workers import Channel, Ready, WorkerDied
from ._processes import ToEvalWorker


def main() -> int:
    """Serve batches on stdin/stdout until end of input."""
    channel = Channel.of_this_process(ToEvalWorker)

    from .._limits import Limits
    from ._outcome import Checker

    try:
        checker = Checker(Limits(**channel.receive()))
    except WorkerDied:
        return 0  # the parent closed the pipe before sending anything
    checker.sandbox.run("pass")  # load the guest image before the first batch
    channel.send(Ready())
    while True:
        try:
            batch = channel.receive()
        except WorkerDied:
            break  # end of input
        channel.send([(index, checker.check(program)) for index, program in batch])
    checker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
