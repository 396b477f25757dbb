"""The seed example, end to end: "Pull our Q3 sales data and create a chart showing monthly revenue by
region, highlighting any months where we missed target."

The model gets ``query_database`` and ``get_targets`` (`host_functions.sales`,
over a real SQLite database made by `create_sales_db`) and ``run_code``. With a
real model (``OPENAI_API_KEY``, optional ``OPENAI_BASE_URL`` and
``WASMRUN_MODEL``) the conversation is live; offline, `RECORDED_CONVERSATION`
(the model's side of a conversation) is replayed by a local OpenAI-compatible
server through exactly the same code path (`run_seed`).

The recording: the model asks for the targets with a direct tool call, then
writes code that pulls the sales rows through ``import tools`` - first with
pandas, which the default image does not have (the ``ModuleNotFoundError`` is
fed back), then with the standard library only: it aggregates with
``collections`` and draws the chart as an SVG file in the sandbox's working
directory, which comes back as an artifact. Once a "scientific" image with
pandas and matplotlib exists, only `CHART_CODE` (and the answer's file name)
need to change: artifacts of any type (``.png`` too) flow the same way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
import openai

from .._limits import Limits
from ..tools import ToolRegistry
from ._agent import Agent
from ._replay import ReplayServer, call, run_code_call, say
from ._results import AgentLimits, AgentResult, Candidate
from ._run_code import RUN_CODE

SEED_TASK = (
    "Pull our Q3 sales data and create a chart showing monthly revenue by region, "
    "highlighting any months where we missed target."
)

SEED_INSTRUCTIONS = """\
Our sales database is reachable through the tools query_database and get_targets. "Our Q3" means the \
latest Q3 that has data. Save charts as image files in the working directory of run_code (PNG with \
matplotlib; SVG when no plotting library is available) and name the chart file in your answer."""

CHART_EXTENSIONS = (".svg", ".png", ".jpg", ".jpeg", ".pdf", ".html")
"""Artifacts that count as a chart for `chart_validator`."""

#: The model's first attempt: pandas, as models often write; the default image has no pandas.
PANDAS_CODE = """\
import pandas as pd
import tools

rows = tools.query_database(table="sales", quarter="2024-Q3", fields=["month", "region", "revenue"])
df = pd.DataFrame(rows)
monthly = df.pivot_table(index="month", columns="region", values="revenue", aggfunc="sum")
print(monthly)
"""

#: The fix: the standard library only; the chart is an SVG written to the working directory.
CHART_CODE = """\
import math
import tools
from collections import defaultdict
from xml.sax.saxutils import escape

QUARTER = "2024-Q3"
MONTHS = ["Jul", "Aug", "Sep"]

rows = tools.query_database(table="sales", quarter=QUARTER, fields=["month", "region", "revenue"])
targets = {t["month"]: t["target"] for t in tools.get_targets(quarter=QUARTER)}

revenue = defaultdict(float)  # (month, region) -> revenue
for row in rows:
    revenue[row["month"], row["region"]] += row["revenue"]
regions = sorted({region for _, region in revenue})
totals = {m: sum(revenue[m, r] for r in regions) for m in MONTHS}
missed = [m for m in MONTHS if totals[m] < targets[m]]

print(f"{len(rows)} sales rows for {QUARTER}")
print(f"{'month':<6}" + "".join(f"{r:>10}" for r in regions) + f"{'total':>11}{'target':>11}  status")
for m in MONTHS:
    gap = (totals[m] / targets[m] - 1) * 100
    status = f"MISSED ({gap:+.1f}%)" if m in missed else f"met ({gap:+.1f}%)"
    cells = "".join(f"{revenue[m, r]:>10,.0f}" for r in regions)
    print(f"{m:<6}{cells}{totals[m]:>11,.0f}{targets[m]:>11,.0f}  {status}")

# Stacked bars (one segment per region), the target as a dashed line, missed months shaded red.
W, H, LEFT, RIGHT, TOP, BOTTOM = 760, 460, 90, 170, 60, 60
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948"]
top_value = max(max(totals.values()), max(targets.values())) * 1.12
raw_step = top_value / 5  # round gridlines: 1, 2, 2.5 or 5 times a power of ten
magnitude = 10 ** math.floor(math.log10(raw_step))
step = next(f * magnitude for f in (1, 2, 2.5, 5, 10) if f * magnitude >= raw_step)
ticks = math.ceil(top_value / step)
top_value = ticks * step
plot_h = H - TOP - BOTTOM
col_w = (W - LEFT - RIGHT) / len(MONTHS)
bar_w = col_w * 0.5

def y(value):
    return TOP + plot_h * (1 - value / top_value)

FONT = "Helvetica, Arial, DejaVu Sans, sans-serif"
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="{FONT}" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W / 2}" y="28" text-anchor="middle" font-size="17" font-weight="bold">'
       f'Monthly revenue by region, {QUARTER} (missed targets in red)</text>']
for i in range(ticks + 1):  # gridlines and y labels
    value = step * i
    svg.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#e5e5e5"/>')
    svg.append(f'<text x="{LEFT - 8}" y="{y(value) + 4:.1f}" text-anchor="end">${value / 1000:,.0f}k</text>')
for i, m in enumerate(MONTHS):
    x0 = LEFT + i * col_w
    bar_x = x0 + (col_w - bar_w) / 2
    if m in missed:
        svg.append(f'<rect x="{x0 + 4:.1f}" y="{TOP}" width="{col_w - 8:.1f}" height="{plot_h}" fill="#fde0e0"/>')
    base = 0.0
    for j, r in enumerate(regions):
        value = revenue[m, r]
        svg.append(f'<rect x="{bar_x:.1f}" y="{y(base + value):.1f}" width="{bar_w:.1f}" '
                   f'height="{y(base) - y(base + value):.1f}" fill="{COLORS[j % len(COLORS)]}">'
                   f'<title>{escape(m)} {escape(r)}: ${value:,.0f}</title></rect>')
        base += value
    ty = y(targets[m])
    svg.append(f'<line x1="{bar_x - 14:.1f}" x2="{bar_x + bar_w + 14:.1f}" y1="{ty:.1f}" y2="{ty:.1f}" '
               'stroke="black" stroke-width="2" stroke-dasharray="6 4"/>')
    gap = (totals[m] / targets[m] - 1) * 100
    color, word = ("#c0392b", "MISSED") if m in missed else ("#2e7d32", "met")
    label_y = min(ty, y(totals[m])) - 10
    svg.append(f'<text x="{bar_x + bar_w / 2:.1f}" y="{label_y:.1f}" text-anchor="middle" fill="{color}" '
               f'font-weight="bold">{word} {gap:+.1f}%</text>')
    svg.append(f'<text x="{bar_x + bar_w / 2:.1f}" y="{H - BOTTOM + 20}" text-anchor="middle" '
               f'font-size="14">{escape(m)}</text>')
    svg.append(f'<text x="{bar_x + bar_w / 2:.1f}" y="{H - BOTTOM + 38}" text-anchor="middle" fill="#555">'
               f'${totals[m] / 1000:,.0f}k of ${targets[m] / 1000:,.0f}k</text>')
lx = W - RIGHT + 20
for j, r in enumerate(reversed(regions)):  # legend, in stacking order top-down
    k = len(regions) - 1 - j
    svg.append(f'<rect x="{lx}" y="{TOP + 20 * j}" width="14" height="14" fill="{COLORS[k % len(COLORS)]}"/>')
    svg.append(f'<text x="{lx + 20}" y="{TOP + 20 * j + 12}">{escape(r)}</text>')
ly = TOP + 20 * len(regions) + 14
svg.append(f'<line x1="{lx}" x2="{lx + 14}" y1="{ly}" y2="{ly}" stroke="black" stroke-width="2" '
           'stroke-dasharray="4 2"/>')
svg.append(f'<text x="{lx + 20}" y="{ly + 4}">monthly target</text>')
svg.append(f'<rect x="{lx}" y="{ly + 12}" width="14" height="14" fill="#fde0e0"/>')
svg.append(f'<text x="{lx + 20}" y="{ly + 24}">missed target</text>')
svg.append("</svg>")

with open("q3_revenue_by_region.svg", "w") as f:
    f.write("\\n".join(svg))

{"missed_months": missed, "totals": {m: round(totals[m], 2) for m in MONTHS}, "targets": targets}
"""

CHART_FILE = "q3_revenue_by_region.svg"

FINAL_ANSWER = """\
Here is Q3 2024 (Jul-Sep) revenue by region, from the 300 sales rows of the quarter, against the \
monthly targets. The chart is in **q3_revenue_by_region.svg**: one stacked bar per month (a segment per \
region), the target as a dashed line, and the months that missed target shaded red.

| Month | East | North | South | West | Total | Target | vs target |
|---|---:|---:|---:|---:|---:|---:|---|
| Jul | $75,846 | $87,525 | $75,471 | $69,005 | $307,847 | $295,000 | met, +4.4% |
| Aug | $78,241 | $73,360 | $78,275 | $27,052 | $256,927 | $288,000 | **missed, -10.8%** |
| Sep | $72,389 | $70,792 | $82,026 | $72,183 | $297,391 | $304,000 | **missed, -2.2%** |

We missed target in **August** (short by $31,073) and **September** (short by $6,609). August's miss \
comes from the West region: $27,052, against $69,005 in July and $72,183 in September, while the other \
regions sold at their usual level. September missed narrowly, with no single region standing out."""


#: Scientific image, first attempt: a wrong column name; the tool refuses it and the error is fed back.
SCIENTIFIC_FIRST_CODE = """\
import pandas as pd
import tools

sales = pd.DataFrame(tools.query_database(table="sales", quarter="2024-Q3", fields=["month", "region", "sales"]))
print(sales.head())
"""

#: Scientific image, the fix: pandas for the numbers, matplotlib for the chart, saved as a PNG.
SCIENTIFIC_CHART_CODE = """\
import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import tools

QUARTER = "2024-Q3"
sales = pd.DataFrame(tools.query_database(table="sales", quarter=QUARTER, fields=["month", "region", "revenue"]))
targets = pd.DataFrame(tools.get_targets(quarter=QUARTER)).set_index("month")["target"]

months = list(targets.index)  # calendar order
monthly = sales.pivot_table(index="month", columns="region", values="revenue", aggfunc="sum").reindex(months)
summary = pd.DataFrame({"total": monthly.sum(axis=1), "target": targets})
summary["vs_target_%"] = (summary["total"] / summary["target"] - 1) * 100
missed = summary.index[summary["total"] < summary["target"]].tolist()
print(f"{len(sales)} sales rows for {QUARTER}")
print(monthly.round(0).to_string())
print(summary.round(1).to_string())

fig, ax = plt.subplots(figsize=(9, 5.5))
monthly.plot(kind="bar", stacked=True, ax=ax, colormap="tab10", width=0.6)
for i, month in enumerate(months):
    ax.hlines(targets[month], i - 0.35, i + 0.35, colors="black", linestyles="dashed",
              label="target" if i == 0 else None)
    if month in missed:
        ax.axvspan(i - 0.45, i + 0.45, color="red", alpha=0.12, zorder=0)
        top = max(summary.loc[month, "total"], targets[month])
        ax.annotate(f"missed {summary.loc[month, 'vs_target_%']:+.1f}%", (i, top), textcoords="offset points",
                    xytext=(0, 8), ha="center", color="darkred", fontweight="bold")
ax.set_title(f"Monthly revenue by region, {QUARTER} (months that missed target in red)")
ax.set_xlabel("")
ax.set_ylabel("revenue ($)")
ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("${x:,.0f}"))
ax.tick_params(axis="x", rotation=0)
ax.legend(title="region", bbox_to_anchor=(1.01, 1), loc="upper left")
fig.tight_layout()
fig.savefig("q3_revenue_by_region.png", dpi=110)
plt.close(fig)

{"missed_months": missed, "totals": summary["total"].round(2).to_dict(), "targets": targets.to_dict()}
"""

SCIENTIFIC_CHART_FILE = "q3_revenue_by_region.png"


def recorded_conversation(image: str = "default") -> list[dict[str, Any]]:
    """The model's side of the seed conversation, one assistant message per turn (for `ReplayServer`).

    ``image="scientific"``: the model writes pandas + matplotlib and saves a PNG (its first
    attempt asks for a column that does not exist and gets the tool's error back);
    ``"default"``: the standard-library version with an SVG chart.
    """
    # Both recordings follow one script: fetch the targets, a first program that fails, the fix, the answer.
    if image == "scientific":
        first_code = SCIENTIFIC_FIRST_CODE
        first_say = "Targets: Jul $295,000, Aug $288,000, Sep $304,000. Now the sales rows, in pandas."
        fixed_code = SCIENTIFIC_CHART_CODE
        fixed_say = "The revenue column is called `revenue`, not `sales`. Fixing that and drawing the chart."
        answer = FINAL_ANSWER.replace(CHART_FILE, SCIENTIFIC_CHART_FILE)
    else:
        first_code = PANDAS_CODE
        first_say = "Targets: Jul $295,000, Aug $288,000, Sep $304,000. Now I'll aggregate the sales rows in code."
        fixed_code = CHART_CODE
        fixed_say = "pandas is not available, so I'll aggregate with the standard library and draw the chart as SVG."
        answer = FINAL_ANSWER
    return [
        call("get_targets", {"quarter": "2024-Q3"}, id="call_targets"),
        run_code_call(first_code, content=first_say, id="call_code_1"),
        run_code_call(fixed_code, content=fixed_say, id="call_code_2"),
        say(answer),
    ]


RECORDED_CONVERSATION = recorded_conversation()
"""The recorded model responses, replayed offline."""


def recorded_code_turns(image: str = "default") -> tuple[list[tuple[str, str]], str]:
    """The recording's ``run_code`` turns as ``(what the model says, its code)``, and its final answer.

    For frameworks that script their own test model (``examples/``): the recording's direct
    ``get_targets`` call is left out, because the working program reads the targets itself
    through ``import tools``.
    """
    turns: list[tuple[str, str]] = []
    answer = ""
    for message in recorded_conversation(image):
        for tool_call in message.get("tool_calls") or []:
            if tool_call["function"]["name"] == RUN_CODE:
                code = msgspec.json.decode(tool_call["function"]["arguments"])["code"]
                turns.append((message.get("content") or "", code))
        if not message.get("tool_calls"):
            answer = message["content"]
    return turns, answer


def chart_validator(candidate: Candidate) -> str | None:
    """Accept an answer only when the code produced a chart file and the answer names it."""
    charts = [name for name in candidate.files if name.lower().endswith(CHART_EXTENSIONS)]
    if not charts:
        return (
            "no chart file was produced: write the chart to a file in run_code's working directory "
            f"(one of {', '.join(CHART_EXTENSIONS)})"
        )
    if not any(PurePosixPath(name).name in candidate.text for name in charts):
        return f"the answer does not name the chart file ({', '.join(charts)})"
    return None


def seed_registry(db_path: str | Path) -> ToolRegistry:
    """A registry with the seed's two tools over the sales database at `db_path`."""
    from host_functions.sales import register

    registry = ToolRegistry(max_calls=100)
    register(registry, db_path)
    return registry


@contextmanager
def sales_database(directory: str | Path | None = None) -> Iterator[Path]:
    """A fresh sales database (`create_sales_db`) in `directory`, or in a temporary one removed afterwards."""
    from host_functions.sales import create_sales_db

    if directory is not None:
        yield create_sales_db(Path(directory) / "sales.db")
        return
    with tempfile.TemporaryDirectory(prefix="wasmrun-seed-") as tmp:
        yield create_sales_db(Path(tmp) / "sales.db")


def run_seed(
    client: openai.OpenAI,
    model: str,
    *,
    db_path: str | Path,
    transcript: str | Path | None = None,
    limits: Limits | None = None,
    agent_limits: AgentLimits | None = None,
    task: str = SEED_TASK,
    image: str = "default",
    **options: Any,
) -> AgentResult:
    """Run the seed task with `client` (a real endpoint, or a `ReplayServer`'s client) and the seed's tools."""
    with Agent(
        client,
        model,
        tools=seed_registry(db_path),
        limits=limits or Limits(timeout_s=30 if image == "scientific" else 10),
        image=image,
        agent_limits=agent_limits,
        validator=chart_validator,
        instructions=SEED_INSTRUCTIONS,
        **options,
    ) as agent:
        return agent.run(task, transcript=transcript)


def replay_seed(
    *,
    db_path: str | Path,
    transcript: str | Path | None = None,
    script: list[Any] | None = None,
    image: str = "default",
    stateful: bool = False,
    **options: Any,
) -> tuple[AgentResult, ReplayServer]:
    """The seed example offline: the recorded conversation for `image` (or `script`) replayed by a local server.

    `stateful` runs the agent's code in one session (the recorded code is self-contained, so it works both ways).
    `options` go to `Agent` (e.g. ``deterministic=True, seed=0``).
    """
    recording = script if script is not None else recorded_conversation(image)
    with ReplayServer(recording, model="recorded-seed") as server:
        result = run_seed(
            server.client(),
            "recorded-seed",
            db_path=db_path,
            transcript=transcript,
            image=image,
            stateful=stateful,
            **options,
        )
    return result, server


def save_artifacts(files: Mapping[str, bytes], out_dir: str | Path) -> list[Path]:
    """Write `files` (guest-made artifacts) into `out_dir`, by base name only: nothing can escape `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, data in files.items():
        base = PurePosixPath(name).name
        if base in ("", ".", "..") or base.startswith("."):
            continue
        target = out / base
        target.write_bytes(data)
        written.append(target)
    return written
