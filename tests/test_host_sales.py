"""The seed example's sales database (`host_functions.sales`) and its two tools."""

from __future__ import annotations

import hashlib
import inspect
import re
import sqlite3
import typing
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from conftest import RecordingRegistry

import wasmrun
from host_functions.sales import (
    MONTHS,
    REGIONS,
    ROWS_PER_REGION_MONTH,
    SalesData,
    create_sales_db,
    normalize_quarter,
    register,
)
from host_functions.sql import SQLToolError

Q3 = "2024-Q3"


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_sales_db(tmp_path_factory.mktemp("sales") / "sales.db")


@pytest.fixture(scope="module")
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A direct (host-side, read-only) connection, to check the tools against."""
    conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def sales(db_path: Path) -> SalesData:
    return SalesData(db_path)


def _month_totals(conn: sqlite3.Connection, quarter: str) -> dict[str, float]:
    rows = conn.execute("SELECT month, sum(revenue) FROM sales WHERE quarter = ? GROUP BY month", (quarter,))
    return dict(rows.fetchall())


def _targets(conn: sqlite3.Connection, quarter: str) -> dict[str, float]:
    return dict(conn.execute("SELECT month, target FROM targets WHERE quarter = ?", (quarter,)).fetchall())


# ------------------------------------------------------------------ the generated database


def test_schema(raw: sqlite3.Connection) -> None:
    def columns(table: str) -> list[tuple[str, str]]:
        return [(row[1], row[2]) for row in raw.execute(f"PRAGMA table_info({table})")]

    assert columns("sales") == [("month", "TEXT"), ("region", "TEXT"), ("revenue", "REAL"), ("quarter", "TEXT")]
    assert columns("targets") == [("quarter", "TEXT"), ("month", "TEXT"), ("target", "REAL")]


def test_q3_2024_has_25_rows_per_month_and_region(raw: sqlite3.Connection) -> None:
    counts = raw.execute("SELECT month, region, count(*) FROM sales WHERE quarter = ? GROUP BY month, region", (Q3,))
    table = {(m, r): n for m, r, n in counts}
    assert table == {(m, r): ROWS_PER_REGION_MONTH for m in ("Jul", "Aug", "Sep") for r in REGIONS}
    assert ROWS_PER_REGION_MONTH == 25
    assert set(REGIONS) == {"North", "South", "East", "West"}


def test_other_quarters_are_present(raw: sqlite3.Connection) -> None:
    quarters = {q for (q,) in raw.execute("SELECT DISTINCT quarter FROM sales")}
    assert Q3 in quarters
    assert len(quarters - {Q3}) >= 2
    for quarter in quarters:
        year, number = quarter.split("-Q")
        months = {m for (m,) in raw.execute("SELECT DISTINCT month FROM sales WHERE quarter = ?", (quarter,))}
        assert months <= set(MONTHS[int(number)]), quarter
        assert len(year) == 4


def test_revenues_are_positive_and_rounded(raw: sqlite3.Connection) -> None:
    for (revenue,) in raw.execute("SELECT revenue FROM sales"):
        assert revenue > 0
        assert round(revenue, 2) == revenue


def test_q3_targets_exist_for_each_month(raw: sqlite3.Connection) -> None:
    assert set(_targets(raw, Q3)) == {"Jul", "Aug", "Sep"}


def _check_story(conn: sqlite3.Connection) -> None:
    totals, targets = _month_totals(conn, Q3), _targets(conn, Q3)
    missed = {m for m in totals if totals[m] < targets[m]}
    assert missed, "at least one Q3 month must miss its target"
    assert missed != set(totals), "at least one Q3 month must meet its target"
    assert totals["Jul"] >= targets["Jul"]
    assert totals["Aug"] < 0.95 * targets["Aug"]  # a clear miss
    assert totals["Sep"] < targets["Sep"]
    # A region-month that clearly misses: under 60 % of an even share of the month's target.
    region_month = conn.execute(
        "SELECT month, region, sum(revenue) FROM sales WHERE quarter = ? GROUP BY month, region", (Q3,)
    ).fetchall()
    clear_misses = {(m, r) for m, r, total in region_month if total < 0.6 * targets[m] / len(REGIONS)}
    assert ("Aug", "West") in clear_misses


def test_seed_example_story(raw: sqlite3.Connection) -> None:
    _check_story(raw)


@pytest.mark.parametrize("seed", range(12))
def test_story_holds_for_every_seed(tmp_path: Path, seed: int) -> None:
    path = create_sales_db(tmp_path / "s.db", seed=seed)
    conn = sqlite3.connect(path)
    try:
        _check_story(conn)
    finally:
        conn.close()


def test_deterministic(tmp_path: Path) -> None:
    def rows(path: Path) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path)
        try:
            return conn.execute("SELECT * FROM sales").fetchall() + conn.execute("SELECT * FROM targets").fetchall()
        finally:
            conn.close()

    a = create_sales_db(tmp_path / "a.db", seed=3)
    b = create_sales_db(tmp_path / "b.db", seed=3)
    c = create_sales_db(tmp_path / "c.db", seed=4)
    assert rows(a) == rows(b)
    assert rows(a) != rows(c)


def test_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "sales.db"
    path.write_bytes(b"old junk")
    assert create_sales_db(path) == path.resolve()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM sales WHERE quarter = ?", (Q3,)).fetchone()[0] == 300
    finally:
        conn.close()
    assert [p.name for p in tmp_path.iterdir()] == ["sales.db"]  # no temporary files left behind


# ------------------------------------------------------------------ quarters


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("2024-Q3", (2024, 3)),
        ("2024-q3", (2024, 3)),
        ("2024Q3", (2024, 3)),
        (" 2024 Q3 ", (2024, 3)),
        ("Q3 2024", (2024, 3)),
        ("q3-2024", (2024, 3)),
        ("Q3", (None, 3)),
        ("q1", (None, 1)),
    ],
)
def test_quarter_forms(text: str, parsed: tuple[int | None, int]) -> None:
    assert normalize_quarter(text) == parsed


@pytest.mark.parametrize("text", ["Q5", "2024-Q0", "third quarter", "2024", "", "2024-Q3; DROP TABLE sales", "24-Q3"])
def test_bad_quarters(text: str) -> None:
    with pytest.raises(SQLToolError, match="invalid quarter"):
        normalize_quarter(text)


# ------------------------------------------------------------------ query_database


def test_query_database_aggregates_match_sql(sales: SalesData, raw: sqlite3.Connection) -> None:
    rows = sales.query_database("sales", Q3, ["month", "region", "revenue"])
    assert len(rows) == 3 * len(REGIONS) * ROWS_PER_REGION_MONTH
    assert all(set(row) == {"month", "region", "revenue"} for row in rows)
    by_month: dict[str, float] = defaultdict(float)
    by_region_month: dict[tuple[str, str], float] = defaultdict(float)
    for row in rows:
        by_month[row["month"]] += row["revenue"]
        by_region_month[row["month"], row["region"]] += row["revenue"]
    expected = _month_totals(raw, Q3)
    assert by_month.keys() == expected.keys()
    for month, total in expected.items():
        assert by_month[month] == pytest.approx(total, abs=1e-6)
    expected_rm = raw.execute(
        "SELECT month, region, sum(revenue) FROM sales WHERE quarter = ? GROUP BY month, region", (Q3,)
    ).fetchall()
    for month, region, total in expected_rm:
        assert by_region_month[month, region] == pytest.approx(total, abs=1e-6)


def test_missed_months_from_the_tools(sales: SalesData, raw: sqlite3.Connection) -> None:
    """The seed example's question, answered with the two tools only."""
    totals: dict[str, float] = defaultdict(float)
    for row in sales.query_database("sales", "Q3", ["month", "revenue"]):
        totals[row["month"]] += row["revenue"]
    targets = {t["month"]: t["target"] for t in sales.get_targets("Q3")}
    missed = [m for m in ("Jul", "Aug", "Sep") if totals[m] < targets[m]]
    assert missed == ["Aug", "Sep"]


def test_quarter_spellings_agree(sales: SalesData) -> None:
    canonical = sales.query_database("sales", "2024-Q3", ["revenue"])
    for spelling in ("Q3", "q3", "2024q3", "Q3 2024"):
        assert sales.query_database("sales", spelling, ["revenue"]) == canonical


def test_bare_quarter_means_the_latest_year(sales: SalesData) -> None:
    assert {r["quarter"] for r in sales.query_database("sales", "Q3", ["quarter"])} == {"2024-Q3"}
    assert {r["quarter"] for r in sales.query_database("sales", "2023-Q3", ["quarter"])} == {"2023-Q3"}


def test_only_the_requested_quarter(sales: SalesData, raw: sqlite3.Connection) -> None:
    for quarter in ("2023-Q3", "2024-Q2", "2024-Q4"):
        rows = sales.query_database("sales", quarter, ["quarter", "revenue"])
        count = raw.execute("SELECT count(*) FROM sales WHERE quarter = ?", (quarter,)).fetchone()[0]
        assert len(rows) == count > 0
        assert {r["quarter"] for r in rows} == {quarter}


def test_fields(sales: SalesData) -> None:
    assert list(sales.query_database("sales", Q3, ["revenue", "month"])[0]) == ["revenue", "month"]
    assert list(sales.query_database("sales", Q3, [])[0]) == ["month", "region", "revenue", "quarter"]
    assert list(sales.query_database("sales", Q3, ["month", "month"])[0]) == ["month"]  # duplicates collapse
    assert list(sales.query_database("targets", Q3, [])[0]) == ["quarter", "month", "target"]


def test_targets_table(sales: SalesData, raw: sqlite3.Connection) -> None:
    rows = sales.query_database("targets", Q3, ["month", "target"])
    assert {r["month"]: r["target"] for r in rows} == _targets(raw, Q3)


@pytest.mark.parametrize(
    "fields",
    [
        ["nope"],
        ["month", "target"],  # target is a column of targets, not of sales
        ["*"],
        ["revenue FROM sales; DROP TABLE sales; --"],
        ['revenue" FROM sales --'],
        ["sum(revenue)"],
        ["MONTH"],
        ["rowid"],
    ],
)
def test_bad_fields_refused(sales: SalesData, fields: list[str]) -> None:
    with pytest.raises(SQLToolError, match=r"unknown field\(s\)"):
        sales.query_database("sales", Q3, fields)


@pytest.mark.parametrize("fields", ["month", None, [1], ("month",)])
def test_fields_must_be_a_list_of_strings(sales: SalesData, fields: Any) -> None:
    with pytest.raises(SQLToolError, match="fields must be a list"):
        sales.query_database("sales", Q3, fields)


@pytest.mark.parametrize("table", ["customers", "sqlite_master", "sales; DROP TABLE sales", "", "SALES"])
def test_bad_tables_refused(sales: SalesData, table: Any) -> None:
    with pytest.raises(SQLToolError, match="unknown table"):
        sales.query_database(table, Q3, ["month"])


def test_quarter_without_data(sales: SalesData) -> None:
    with pytest.raises(SQLToolError, match=r"no sales data for quarter 2025-Q1 \(available quarters: 2023-Q3, "):
        sales.query_database("sales", "2025-Q1", ["month"])
    with pytest.raises(SQLToolError, match="no sales data for Q1 in any year"):
        sales.query_database("sales", "Q1", ["month"])
    with pytest.raises(SQLToolError, match="invalid quarter"):
        sales.query_database("sales", "summer", ["month"])


# ------------------------------------------------------------------ get_targets


def test_get_targets(sales: SalesData, raw: sqlite3.Connection) -> None:
    targets = sales.get_targets(Q3)
    assert [t["month"] for t in targets] == ["Jul", "Aug", "Sep"]
    assert all(set(t) == {"month", "target"} for t in targets)
    assert {t["month"]: t["target"] for t in targets} == _targets(raw, Q3)
    assert sales.get_targets("Q3") == targets


def test_get_targets_other_quarters(sales: SalesData) -> None:
    assert [t["month"] for t in sales.get_targets("Q4")] == ["Oct", "Nov", "Dec"]
    assert [t["month"] for t in sales.get_targets("2024-Q2")] == ["Apr", "May", "Jun"]
    with pytest.raises(SQLToolError, match="no targets data"):
        sales.get_targets("2030-Q1")


# ------------------------------------------------------------------ safety, registration


def test_tools_never_modify_the_database(db_path: Path, sales: SalesData) -> None:
    before = hashlib.sha256(db_path.read_bytes()).hexdigest()
    sales.query_database("sales", Q3, ["month", "region", "revenue"])
    sales.get_targets("Q3")
    for fields in (["x"], ["revenue; DROP TABLE sales"]):
        with pytest.raises(SQLToolError):
            sales.query_database("sales", Q3, fields)
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == before


def test_not_a_sales_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sales (x)")
    conn.close()
    with pytest.raises(ValueError, match="not a sales database"):
        SalesData(path)


def test_register(db_path: Path) -> None:
    registry = RecordingRegistry()
    register(registry, db_path)
    assert set(registry.tools) == {"query_database", "get_targets"}
    query_database = registry.tools["query_database"][0]
    get_targets = registry.tools["get_targets"][0]
    assert query_database.__name__ == "query_database"
    assert len(query_database("sales", "2024-Q3", ["revenue"])) == 300
    assert [t["month"] for t in get_targets("2024-Q3")] == ["Jul", "Aug", "Sep"]


def test_tools_are_registry_ready(sales: SalesData) -> None:
    """What the registry derives from a tool: resolvable hints, buildable schemas, documented parameters."""

    for func in (sales.query_database, sales.get_targets):
        hints = typing.get_type_hints(func, include_extras=True)
        params = inspect.signature(func).parameters
        fields: dict[str, Any] = {
            n: (hints[n], ... if p.default is inspect.Parameter.empty else p.default) for n, p in params.items()
        }
        model = pydantic.create_model(f"{func.__name__}_args", **fields)
        model.model_json_schema()
        pydantic.TypeAdapter(hints["return"]).json_schema()
        doc = inspect.getdoc(func) or ""
        args = re.search(r"^Args:\n((?:    .*\n?)+)", doc, re.MULTILINE)
        assert args is not None
        assert set(re.findall(r"^    (\w+):", args.group(1), re.MULTILINE)) == set(params)
    schema = pydantic.create_model(
        "qd",
        **{
            n: (t, ...)
            for n, t in typing.get_type_hints(sales.query_database, include_extras=True).items()
            if n != "return"
        },
    ).model_json_schema()
    assert schema["properties"]["table"]["enum"] == ["sales", "targets"]


SEED_EXAMPLE = """
import tools
from collections import defaultdict

totals = defaultdict(float)
for row in tools.query_database("sales", "Q3", ["month", "revenue"]):
    totals[row["month"]] += row["revenue"]
targets = {t["month"]: t["target"] for t in tools.get_targets("Q3")}
try:
    tools.query_database("sales", "Q3", ["revenue; DROP TABLE sales"])
except tools.ToolError as exc:
    print("refused:", exc)
[m for m in ("Jul", "Aug", "Sep") if totals[m] < targets[m]]
"""


def test_seed_example_in_the_sandbox(db_path: Path) -> None:
    """End to end: guest code in the sandbox answers the seed question through the registered tools."""
    registry_cls = getattr(wasmrun, "ToolRegistry", None)
    if registry_cls is None:
        pytest.skip("wasmrun.ToolRegistry is not available")
    registry = registry_cls()
    register(registry, db_path)
    before = hashlib.sha256(db_path.read_bytes()).hexdigest()
    with wasmrun.Sandbox(tools=registry) as sandbox:
        result = sandbox.run(SEED_EXAMPLE)
    assert result.ok, result.error
    assert result.value == "['Aug', 'Sep']"
    assert "refused:" in result.stdout
    assert "unknown field(s)" in result.stdout
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == before
