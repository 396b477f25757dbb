"""Entry point of a worker process (``python -m wasmrun._worker_main``); see `wasmrun._workers`.

It reads jobs from stdin and answers on stdout, one job at a time, and runs
each in an ordinary in-process `Sandbox` (``executor="inline"``). Tool calls
go back to the caller through `_RemoteTools`, which stands in for the caller's
registry: it hands the guest the caller's tool specs and forwards every call.
It exits at the end of its input.

It ignores SIGINT: a terminal's Ctrl-C reaches every process of the
foreground process group, workers included, but Ctrl-C belongs to the caller,
which raises `KeyboardInterrupt` and kills the worker that ran the interrupted
guest. An idle worker that died of it would fail the caller's next run.
"""

from __future__ import annotations

import signal
from typing import Any

from . import _workers
from ._limits import Limits
from ._result import Result
from ._runstate import RunState, Trap
from ._sandbox import Sandbox
from .tools import RunContext, ToolRegistry


class _RemoteTools(ToolRegistry):
    """The caller's registry, seen from the worker: its guest specs, and calls forwarded over the pipe."""

    def __init__(self, specs: list[dict[str, Any]], channel: _workers.Channel) -> None:
        super().__init__()
        self._specs = specs
        self._channel = channel

    def guest_specs(self) -> list[dict[str, Any]]:
        return self._specs

    def dispatch(self, ctx: RunContext, run: RunState, name: str, args: str) -> tuple[bool, str]:
        self._channel.send(_workers.ToolRequest(name=name, args=args))
        reply = self._channel.receive()
        if not isinstance(reply, _workers.ToolReply):
            raise _workers.WorkerDied(f"expected a tool reply, got {type(reply).__name__}")
        if reply.trap is not None:
            run.timed_out = run.timed_out or reply.timed_out
            raise Trap(reply.trap)
        return reply.ok, reply.payload


def _serve(job: _workers.Job, channel: _workers.Channel) -> Result:
    tools = _RemoteTools(job.tools, channel) if job.tools is not None else None
    with Sandbox(
        limits=Limits(**job.limits), tools=tools, seed=job.seed, image=job.image, prewarm=0, executor="inline",
        deterministic=job.deterministic,
    ) as sandbox:
        return sandbox.run(job.code, files=job.files)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = _workers.Channel.of_this_process(_workers.ToWorker)
    channel.send(_workers.Ready())
    while True:
        try:
            job = channel.receive()
        except _workers.WorkerDied:
            return  # the caller closed the pipe
        if not isinstance(job, _workers.Job):
            channel.send(_workers.Failed(message=f"expected a job, got {type(job).__name__}"))
            continue
        try:
            result = _serve(job, channel)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who owns the run
            channel.send(_workers.Failed(message=f"{type(exc).__name__}: {exc}"))
            continue
        channel.send(_workers.Done(result=result))


if __name__ == "__main__":
    main()
