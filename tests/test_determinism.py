"""`Sandbox(deterministic=True)`: the same code, inputs and seed give byte-identical results, on both images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IMAGES, scientific_installed

import wasmrun
from wasmrun import Limits, Sandbox, ToolRegistry

REPO = Path(__file__).resolve().parent.parent


#: Everything a run could draw from the host: clocks, entropy, hash order, listings, tool arguments.
PROGRAM = """
import datetime, glob, os, random, secrets, time, uuid
import tools
for name in ("zeta.txt", "alpha.txt", "mid.txt"):
    with open(name, "w") as f:
        f.write(str(random.random()))
print("random", random.random(), random.randrange(10**9))
print("time", time.time(), time.time_ns(), time.monotonic(), time.perf_counter())
print("datetime", datetime.datetime.now().isoformat(), datetime.datetime.now(datetime.timezone.utc).isoformat())
print("entropy", os.urandom(8).hex(), secrets.token_hex(8), uuid.uuid4(), random.SystemRandom().random())
print("hash", hash("abc"), hash(b"abc"), list({"x", "y", "z", "w"}))
print("listing", os.listdir("."), [e.name for e in os.scandir(".")], sorted(glob.glob("*.txt")) == glob.glob("*.txt"))
before = time.monotonic()
time.sleep(30)
print("slept", time.monotonic() - before >= 30)
tools.record(value=random.random(), stamp=time.time())
open("out.bin", "wb").write(os.urandom(32))
(random.random(), time.time())
"""


def _registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def record(value: float, stamp: float) -> str:
        """Accept a value (the arguments are what the test compares).

        Args:
            value: a number drawn by the guest.
            stamp: the guest's clock.
        """
        return "ok"

    return registry


def _fingerprint(result: wasmrun.Result) -> dict[str, object]:
    assert result.ok, result.error
    return {
        "stdout": result.stdout,
        "value": result.value,
        "files": {name: data.hex() for name, data in sorted(result.files.items())},
        "tool_calls": [(call.tool, call.arguments) for call in result.tool_calls],
    }


def _run(image: str, *, deterministic: bool = True, seed: int | None = None, prewarm: int | None = None) -> dict:
    with Sandbox(
        image=image,
        deterministic=deterministic,
        seed=seed,
        prewarm=prewarm,
        tools=_registry(),
        limits=Limits(timeout_s=60),
    ) as sb:
        return _fingerprint(sb.run(PROGRAM, files={"input.csv": "a,b\n1,2\n"}))


@pytest.mark.parametrize("image", IMAGES)
def test_same_code_and_seed_give_identical_results(image: str) -> None:
    first = _run(image)
    # A fresh sandbox, with and without ready (pre-warmed) instances: the same bytes.
    assert _run(image, prewarm=0) == first
    assert _run(image) == first
    stdout = str(first["stdout"])
    assert "slept True" in stdout  # a 30 s sleep inside a 60 s deadline, without waiting for it
    assert "listing ['alpha.txt', 'input.csv', 'mid.txt', 'zeta.txt']" in stdout


@pytest.mark.parametrize("image", IMAGES)
def test_identical_across_processes(image: str) -> None:
    script = (
        "import json, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_determinism import _run\n"
        f"print(json.dumps(_run({image!r})))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=True
    )
    assert json.loads(child.stdout.strip().splitlines()[-1]) == json.loads(json.dumps(_run(image)))


@pytest.mark.parametrize("image", IMAGES)
def test_virtual_clock_starts_at_the_documented_instant(image: str) -> None:
    code = (
        "import datetime, time\n"
        "t1 = time.time(); t2 = time.time()\n"
        "now = datetime.datetime.now(datetime.timezone.utc)\n"
        "(t1, t2 - t1, now.year, now.month, now.day, now.hour)"
    )
    with Sandbox(image=image, deterministic=True) as sb:
        result = sb.run(code)
    assert result.ok, result.error
    t1, step, year, month, day, hour = eval(result.value or "")
    assert 946_684_800 <= t1 < 946_684_800 + 10  # 2000-01-01T00:00:00Z, plus the reads before it
    assert step == pytest.approx(0.001, abs=1e-6)  # each read advances the clock by 1 ms
    assert (year, month, day, hour) == (2000, 1, 1, 0)


@pytest.mark.parametrize("image", IMAGES)
def test_seed_changes_the_draws(image: str) -> None:
    code = "import os, random\n(random.random(), os.urandom(8).hex())"
    with (
        Sandbox(image=image, deterministic=True, seed=1) as one,
        Sandbox(image=image, deterministic=True, seed=2) as two,
    ):
        a, b = one.run(code), two.run(code)
    assert a.ok and b.ok
    random_a, entropy_a = eval(a.value or "")
    random_b, entropy_b = eval(b.value or "")
    assert random_a != random_b and entropy_a != entropy_b


@pytest.mark.parametrize("image", IMAGES)
def test_off_by_default_random_and_clock_differ(image: str) -> None:
    code = "import os, random, time, uuid\n(random.random(), os.urandom(8).hex(), str(uuid.uuid4()), time.time())"
    with Sandbox(image=image) as sb:
        assert sb.deterministic is False
        a, b = sb.run(code), sb.run(code)
    assert a.ok and b.ok
    first, second = eval(a.value or ""), eval(b.value or "")
    assert all(x != y for x, y in zip(first, second, strict=True))
    assert first[3] > 1.7e9  # the real clock


@pytest.mark.parametrize("image", IMAGES)
def test_hash_seed_is_fixed_even_without_determinism(image: str) -> None:
    code = "(hash('abc'), hash(b'abc'), list({'x', 'y', 'z', 'w'}))"
    with Sandbox(image=image) as sb:
        values = {sb.run(code).value for _ in range(3)}
    assert len(values) == 1


def test_deterministic_numpy_and_pandas() -> None:
    if not scientific_installed():
        pytest.skip("run `wasmrun image install scientific`")
    code = "import numpy as np, pandas as pd\n(np.random.rand(3).tolist(), str(pd.Timestamp.now()))"
    with Sandbox(image="scientific", deterministic=True, seed=7, limits=Limits(timeout_s=60)) as sb:
        a, b = sb.run(code), sb.run(code)
    assert a.ok, a.error
    assert a.value == b.value
    assert "2000-01-01" in (a.value or "")


def test_sleep_is_virtual_but_the_real_deadline_holds() -> None:
    with Sandbox(deterministic=True, limits=Limits(timeout_s=1)) as sb:
        slept = sb.run("import time\ntime.sleep(3600)\n'woke'")
        spin = sb.run("while True: pass")
    assert slept.value == "'woke'"
    assert spin.error is not None and spin.error.kind == "timeout"


def test_bad_deterministic_argument() -> None:
    with pytest.raises(TypeError, match="deterministic must be a bool"):
        Sandbox(deterministic="yes")  # type: ignore[arg-type]
    with Sandbox(deterministic=True) as sb:
        assert sb.seed == 0
    with Sandbox(deterministic=True, seed=5) as sb:
        assert sb.seed == 5


SESSION_CALLS = [
    "import os, random, time\nstart = time.time()\nfirst = (random.random(), os.urandom(4).hex())\nfirst",
    "(time.time() > start, random.random(), os.urandom(4).hex(), time.time())",
]


def _session_values(sb: Sandbox, *, interrupt: bool = False) -> list[str | None]:
    with sb.session(limits=Limits(timeout_s=30)) as s:
        values = [s.run(SESSION_CALLS[0]).value]
        if interrupt:  # a call stopped by its deadline is rolled back; re-execution must reproduce the state
            stopped = s.run("time.time(); os.urandom(8)\nwhile True: pass", limits=Limits(timeout_s=0.3))
            assert stopped.error is not None and stopped.error.kind == "timeout"
        values.append(s.run(SESSION_CALLS[1]).value)
    return values


@pytest.mark.parametrize("image", IMAGES)
def test_deterministic_sessions_continue_one_clock_and_repeat_exactly(image: str) -> None:
    with Sandbox(image=image, deterministic=True, seed=4, limits=Limits(timeout_s=60)) as sb:
        first = _session_values(sb)
        assert _session_values(sb) == first
        # After a rollback the session is rebuilt by re-execution: the same clock and entropy positions.
        assert _session_values(sb, interrupt=True) == first
    later = eval(first[1] or "")
    assert later[0] is True  # the clock went on from call to call (no restart at 2000-01-01)


@pytest.mark.parametrize("image", IMAGES)
def test_deterministic_fork_continues_identically(image: str) -> None:
    code = "import os, random, time\n(random.random(), os.urandom(4).hex(), time.time())"
    with Sandbox(image=image, deterministic=True, limits=Limits(timeout_s=60)) as sb, sb.session() as s:
        s.run("import random, os, time\nrandom.random(); os.urandom(3); time.time()")
        with s.fork() as child:
            assert child.run(code).value == s.run(code).value


def test_deterministic_runs_in_worker_processes_match_in_process_runs() -> None:
    code = "import os, random, time\n(random.random(), os.urandom(4).hex(), time.time())"
    with (
        Sandbox(deterministic=True, executor="inline") as here,
        Sandbox(deterministic=True, executor="processes") as there,
    ):
        local, remote = here.run(code), there.run(code)
    assert local.ok and remote.ok, (local.error, remote.error)
    assert local.value == remote.value
