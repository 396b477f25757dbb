"""The self-contained HTML report of an evaluation (``--report report.html``).

One HTML file, no external resources: the pass@k table, a per-task pass-rate
plot, failure categories (and exception types), a duration histogram, the
passing samples flagged for review, and a few failures of each category.
Plots are drawn on the host with matplotlib (imported only here, without
pyplot, so the caller's matplotlib backend is untouched) and inlined as
base64 PNG. Every text that came from samples or runs is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import importlib
import io
import math
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._data import write_text_atomic

if TYPE_CHECKING:
    from ._outcome import EvalSummary

#: Colors per verdict category (plots and badges).
COLORS: Final[dict[str, str]] = {
    "passed": "#2e7d32",
    "assertion": "#c62828",
    "exception": "#ef6c00",
    "syntax": "#6a1b9a",
    "timeout": "#1565c0",
    "fuel": "#0277bd",
    "memory": "#00838f",
    "output": "#4e342e",
    "exit": "#ad1457",
    "incomplete": "#000000",
    "internal": "#616161",
}
MAX_EXAMPLES: Final = 5
MAX_RESULT_CHARS: Final = 300


def _import_matplotlib() -> tuple[Any, Any]:
    """(Figure class, FigureCanvasAgg class), or an ImportError saying how to get them."""
    try:
        figure = importlib.import_module("matplotlib.figure")
        agg = importlib.import_module("matplotlib.backends.backend_agg")
    except ImportError as exc:
        raise ImportError("the HTML report needs matplotlib: pip install 'matplotlib>=3.7'") from exc
    return figure.Figure, agg.FigureCanvasAgg


def _png(fig: Any, canvas_class: Any) -> str:
    canvas_class(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _task_plot(summary: EvalSummary, figure_class: Any, canvas_class: Any) -> str:
    tasks = list(summary.per_task)
    rates = [c / n for n, c in summary.per_task.values()]
    fig = figure_class(figsize=(min(24.0, max(8.0, 0.09 * len(tasks) + 2)), 3.6))
    ax = fig.add_subplot()
    colors = ["#2e7d32" if r == 1 else "#c62828" if r == 0 else "#f9a825" for r in rates]
    ax.bar(range(len(tasks)), rates, width=0.85, color=colors)
    ax.set_xlim(-0.8, len(tasks) - 0.2)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("pass rate")
    ax.set_xlabel(f"task (in problem order; {len(tasks)} tasks)")
    ax.set_title("Per-task pass rate (green: all samples pass, red: none, amber: some)")
    step = max(1, math.ceil(len(tasks) / 40))
    ticks = list(range(0, len(tasks), step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([tasks[i].rsplit("/", 1)[-1] for i in ticks], rotation=90, fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig, canvas_class)


def _category_plot(summary: EvalSummary, figure_class: Any, canvas_class: Any) -> str:
    counts: Counter[str] = Counter(r.category for r in summary.results)
    names = [name for name in COLORS if counts.get(name)]
    fig = figure_class(figsize=(7.5, 0.45 * len(names) + 1.2))
    ax = fig.add_subplot()
    ax.barh(names, [counts[n] for n in names], color=[COLORS[n] for n in names])
    ax.invert_yaxis()
    for y, name in enumerate(names):
        ax.text(counts[name], y, f" {counts[name]}", va="center", fontsize=9)
    ax.set_xlabel("samples")
    ax.set_title("Verdict categories")
    ax.margins(x=0.12)
    return _png(fig, canvas_class)


def _duration_plot(summary: EvalSummary, figure_class: Any, canvas_class: Any) -> str | None:
    groups: dict[str, list[float]] = defaultdict(list)
    for r in summary.results:
        if r.duration_s is not None and r.duration_s > 0:
            groups["passed" if r.passed else "failed"].append(r.duration_s * 1000)
    values = [v for vs in groups.values() for v in vs]
    if not values:
        return None
    low, high = max(min(values), 0.1), max(values)
    if high <= low:
        high = low * 10
    edges = [low * (high / low) ** (i / 40) for i in range(41)]
    fig = figure_class(figsize=(7.5, 3.4))
    ax = fig.add_subplot()
    labels = [k for k in ("passed", "failed") if groups.get(k)]
    ax.hist(
        [groups[k] for k in labels],
        bins=edges,
        stacked=True,
        label=labels,
        color=[COLORS["passed"] if k == "passed" else COLORS["assertion"] for k in labels],
    )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(importlib.import_module("matplotlib.ticker").FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("run duration (ms, log scale)")
    ax.set_ylabel("samples")
    ax.set_title("Duration per sample (fresh sandbox instance, compile, tests)")
    ax.legend()
    return _png(fig, canvas_class)


_CSS: Final = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;
padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0 1.2rem} th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;
vertical-align:top} th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block;margin:.5rem 0 1.5rem}
.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;color:#fff;font-size:.8rem}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem} pre{white-space:pre-wrap;margin:0}
.grid{display:flex;flex-wrap:wrap;gap:2rem} .grid>div{flex:1 1 420px}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _img(alt: str, png_base64: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{png_base64}">'


def _badge(category: str) -> str:
    return f'<span class="badge" style="background:{COLORS.get(category, "#616161")}">{_esc(category)}</span>'


def _short(text: str) -> str:
    return text if len(text) <= MAX_RESULT_CHARS else text[: MAX_RESULT_CHARS - 1] + "…"


def render_report(summary: EvalSummary) -> str:
    """The report as one HTML document (a string)."""
    figure_class, canvas_class = _import_matplotlib()
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>wasmrun eval report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>wasmrun eval report</h1>",
        f'<p class="sub">generated {_esc(time.strftime("%Y-%m-%d %H:%M:%S %Z"))}'
        + (f" &middot; results: <code>{_esc(summary.results_path)}</code>" if summary.results_path else "")
        + "</p>",
    ]

    limits = summary.limits
    parts.append('<div class="grid"><div><h2>pass@k</h2><table><tr><th>metric</th><th>value</th></tr>')
    for name, value in summary.pass_at_k.items():
        parts.append(f'<tr><td>{_esc(name)}</td><td class="num">{value:.4f}</td></tr>')
    skipped = [k for k in summary.ks if f"pass@{k}" not in summary.pass_at_k]
    if skipped:
        parts.append(
            "<tr><td colspan=2>not computed (some task has fewer samples): "
            + _esc(", ".join(f"pass@{k}" for k in skipped))
            + "</td></tr>"
        )
    parts.append("</table></div><div><h2>Run</h2><table>")
    rows = [
        ("samples", f"{summary.n_samples} ({summary.n_passed} passed, {summary.n_resumed} resumed)"),
        ("tasks", str(len(summary.per_task))),
        ("backend", f"{summary.backend}, {summary.workers} workers"),
        ("elapsed", f"{summary.elapsed_s:.2f} s ({summary.samples_per_s:,.1f} samples/s over {summary.n_run} run)"),
        (
            "limits per sample",
            f"timeout {limits.timeout_s:g} s, fuel {limits.fuel:,}, memory {limits.memory_bytes // 2**20} MiB, "
            f"output {limits.max_output_bytes:,} B",
        ),
    ]
    parts.extend(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    parts.append("</table></div></div>")

    parts.append("<h2>Per-task pass rate</h2>")
    parts.append(_img("per-task pass rate", _task_plot(summary, figure_class, canvas_class)))

    parts.append('<div class="grid"><div><h2>Failure categories</h2>')
    parts.append(_img("verdict categories", _category_plot(summary, figure_class, canvas_class)))
    parts.append("<table><tr><th>category</th><th>samples</th></tr>")
    for name, count in summary.categories.items():
        parts.append(f'<tr><td>{_badge(name)}</td><td class="num">{count}</td></tr>')
    parts.append("</table></div><div><h2>Exception types (failed samples)</h2>")
    if summary.error_types:
        parts.append("<table><tr><th>type</th><th>samples</th></tr>")
        for name, count in list(summary.error_types.items())[:25]:
            parts.append(f'<tr><td><code>{_esc(name)}</code></td><td class="num">{count}</td></tr>')
        parts.append("</table>")
    else:
        parts.append("<p>none</p>")
    parts.append("</div></div>")

    durations = _duration_plot(summary, figure_class, canvas_class)
    parts.append("<h2>Durations</h2>")
    if durations is not None:
        parts.append(_img("duration histogram", durations))
    else:
        parts.append("<p>no durations recorded (all verdicts were resumed from a results file)</p>")

    parts.append("<h2>Passing samples flagged for review</h2>")
    if summary.flagged:
        parts.append(
            "<p>These samples passed and use constructs that can reach into a harness or fake a result "
            "(a review aid, not a verdict).</p><table><tr><th>#</th><th>task</th><th>constructs</th></tr>"
        )
        for index, task_id, constructs in summary.flagged[:200]:
            parts.append(
                f'<tr><td class="num">{index}</td><td>{_esc(task_id)}</td><td>{_esc(", ".join(constructs))}</td></tr>'
            )
        parts.append("</table>")
    else:
        parts.append("<p>none</p>")

    parts.append("<h2>Example failures</h2>")
    examples: dict[str, list[str]] = defaultdict(list)
    for r in summary.results:
        if not r.passed and len(examples[r.category]) < MAX_EXAMPLES:
            examples[r.category].append(
                f'<tr><td class="num">{r.index}</td><td>{_esc(r.task_id)}</td><td>{_esc(r.error_type or "")}</td>'
                f"<td><pre>{_esc(_short(r.result))}</pre></td></tr>"
            )
    if examples:
        parts.append("<table><tr><th>category</th><th>#</th><th>task</th><th>type</th><th>result</th></tr>")
        for category, rows_html in examples.items():
            for number, row in enumerate(rows_html):
                cell = f'<td rowspan="{len(rows_html)}">{_badge(category)}</td>' if number == 0 else ""
                parts.append(row.replace("<tr>", f"<tr>{cell}", 1))
        parts.append("</table>")
    else:
        parts.append("<p>no failures</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(summary: EvalSummary, path: Path) -> None:
    """Write `render_report(summary)` to `path` (atomically)."""
    write_text_atomic(path, [render_report(summary)])
