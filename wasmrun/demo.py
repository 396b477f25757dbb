"""A tour of the core runtime: ``python -m wasmrun.demo``.

Runs, offline and with no API key, the computational half of the seed example
("Pull our Q3 sales data and ... highlight the months where we missed target")
in the sandbox: the sales data arrives as a read-only input file, the guest
aggregates revenue by month and region in plain Python and writes a report into
its scratch area. Then it shows each limit holding against hostile code.

The full seed example (data through validated tools, pandas and a matplotlib
chart) needs the tool bridge and the scientific image; this demo grows into it.
"""

from __future__ import annotations

import csv
import io
import random

from rich.console import Console
from rich.table import Table

from . import Limits, Sandbox

ANALYSIS = """\
import csv, json
from collections import defaultdict

revenue = defaultdict(float)            # (month, region) -> revenue
for row in csv.DictReader(open("q3_sales.csv")):
    revenue[row["month"], row["region"]] += float(row["revenue"])
targets = {r["month"]: float(r["target"]) for r in csv.DictReader(open("q3_targets.csv"))}

months = sorted(targets, key=["Jul", "Aug", "Sep"].index)
regions = sorted({region for _, region in revenue})
report = []
for month in months:
    total = sum(revenue[month, region] for region in regions)
    missed = total < targets[month]
    report.append({"month": month, "total": round(total, 2), "target": targets[month], "missed": missed})
    print(f"{month}: {total:>12,.2f} vs target {targets[month]:>12,.2f}" + ("  <-- missed" if missed else ""))

with open("q3_report.json", "w") as f:
    json.dump(report, f, indent=2)
[r["month"] for r in report if r["missed"]]
"""

HOSTILE = {
    "infinite loop (fuel)": ("while True: pass", Limits(fuel=2_000_000_000)),
    "blocking sleep (deadline)": ("import time; time.sleep(60)", Limits(timeout_s=1)),
    "memory bomb (memory cap)": ("x = []\nwhile True: x.append(bytearray(10**6))", Limits(memory_bytes=128 * 2**20)),
    "print flood (output cap)": ("while True: print('spam' * 100)", Limits(max_output_bytes=64 * 1024)),
    "read host files": ("open('/etc/passwd').read()", Limits()),
    "spawn a process": ("import subprocess; subprocess.run(['sh'])", Limits()),
}


def sales_files(seed: int = 3) -> dict[str, bytes]:
    """Generated Q3 sales (month, region, revenue) and monthly targets, as CSV files."""
    rng = random.Random(seed)
    sales, targets = io.StringIO(), io.StringIO()
    writer = csv.writer(sales)
    writer.writerow(["month", "region", "revenue"])
    for month in ("Jul", "Aug", "Sep"):
        for region in ("North", "South", "East", "West"):
            for _ in range(25):
                writer.writerow([month, region, round(rng.uniform(800, 5200), 2)])
    csv.writer(targets).writerows([["month", "target"], ["Jul", 290000], ["Aug", 310000], ["Sep", 300000]])
    return {"q3_sales.csv": sales.getvalue().encode(), "q3_targets.csv": targets.getvalue().encode()}


def main() -> None:
    console = Console()
    with Sandbox() as sandbox:
        console.rule("[bold]Q3 sales analysis in the sandbox")
        console.print(ANALYSIS, style="dim", markup=False, highlight=False)
        result = sandbox.run(ANALYSIS, files=sales_files())
        console.print(result.stdout, end="", markup=False)
        console.print(f"value of the last expression: [bold]{result.value}[/]")
        console.print(f"files written by the guest: {sorted(result.files)}")
        console.print(
            f"took {result.stats.duration_s * 1000:.1f} ms, {result.stats.fuel_used:,} fuel; error: {result.error}"
        )

        console.rule("[bold]Hostile code meets the limits")
        table = Table("attempt", "outcome", "message", "ms")
        for name, (code, limits) in HOSTILE.items():
            r = sandbox.run(code, limits=limits)
            outcome = "ok" if r.error is None else f"[red]{r.error.kind}[/] ({r.error.type})"
            message = "" if r.error is None else r.error.message[:70]
            table.add_row(name, outcome, message, f"{r.stats.duration_s * 1000:.0f}")
        console.print(table)
        console.print("The host process is still alive, and nothing leaked between runs.")


if __name__ == "__main__":
    main()
