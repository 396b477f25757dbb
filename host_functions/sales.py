"""The seed example's data: a sales database and the two tools that read it.

`create_sales_db` writes a real SQLite file with two tables::

    sales(month TEXT, region TEXT, revenue REAL, quarter TEXT)
    targets(quarter TEXT, month TEXT, target REAL)

``month`` is a three-letter English abbreviation (``"Jul"``) and ``quarter``
is ``"YYYY-Qn"`` (``"2024-Q3"``). The interesting quarter is 2024-Q3 (Jul,
Aug, Sep; regions North, South, East and West; 25 sales rows per
month-region). By construction, for every seed:

* Jul meets its target, Aug misses it clearly and Sep misses it narrowly;
* the West region in Aug sells far less than the others, less than 60 % of
  an even quarter share (target / 4) of the Aug target.

A few rows for 2023-Q3, 2024-Q2 and 2024-Q4 (only Oct so far) are present too,
so a query must filter on the quarter. `SalesData` exposes the tools
``query_database`` and ``get_targets``, built on `ReadOnlySQL` (read-only,
parameterized, capped); `register` registers them.
"""

import os
import random
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Literal

from .sql import ReadOnlySQL, SQLToolError

__all__ = ["MONTHS", "REGIONS", "SalesData", "create_sales_db", "normalize_quarter", "register"]

#: Months of each quarter, in calendar order.
MONTHS: dict[int, tuple[str, str, str]] = {
    1: ("Jan", "Feb", "Mar"),
    2: ("Apr", "May", "Jun"),
    3: ("Jul", "Aug", "Sep"),
    4: ("Oct", "Nov", "Dec"),
}
_MONTH_ORDER = {month: i for i, month in enumerate(m for q in sorted(MONTHS) for m in MONTHS[q])}
REGIONS: tuple[str, ...] = ("North", "South", "East", "West")

#: Rows per month and region in the main quarter (2024-Q3) and in the others.
ROWS_PER_REGION_MONTH = 25
_OTHER_ROWS_PER_REGION_MONTH = 2

Table = Literal["sales", "targets"]
_TABLES: tuple[str, ...] = ("sales", "targets")

_QUARTER_RE = re.compile(
    r"^\s*(?:(?P<year>\d{4})\s*[-/ ]?\s*Q(?P<q>[1-4])|Q(?P<q2>[1-4])(?:\s*[-/ ]?\s*(?P<year2>\d{4}))?)\s*$",
    re.IGNORECASE,
)


def _round_thousand_up(value: float) -> float:
    return float(-(-int(value) // 1000) * 1000)


def _round_thousand_down(value: float) -> float:
    return float(int(value) // 1000 * 1000)


def create_sales_db(path: str | Path, *, seed: int = 3) -> Path:
    """Create (or replace) the sales SQLite database at `path`, deterministically from `seed`.

    Args:
        path: Where to write the database file; an existing file is replaced atomically.
        seed: Seed of the random revenue figures; the same seed gives the same data.

    Returns:
        The absolute path of the database file.
    """
    path = Path(path).resolve()
    rng = random.Random(seed)
    sales: list[tuple[str, str, float, str]] = []
    targets: list[tuple[str, str, float]] = []

    def add_quarter(quarter: str, months: tuple[str, ...], rows: int) -> dict[str, float]:
        totals: dict[str, float] = {}
        for month in months:
            for region in REGIONS:
                low, high = (
                    (300.0, 2100.0) if (quarter, month, region) == ("2024-Q3", "Aug", "West") else (800.0, 5200.0)
                )
                for _ in range(rows):
                    revenue = round(rng.uniform(low, high), 2)
                    sales.append((month, region, revenue, quarter))
                    totals[month] = totals.get(month, 0.0) + revenue
        return totals

    # Earlier quarters: a handful of rows each, targets a little under what was sold.
    for quarter, months in (("2023-Q3", MONTHS[3]), ("2024-Q2", MONTHS[2])):
        totals = add_quarter(quarter, months, _OTHER_ROWS_PER_REGION_MONTH)
        targets.extend((quarter, m, _round_thousand_down(totals[m] * 0.97)) for m in months)

    # The seed example's quarter: Jul met, Aug missed clearly (weak West), Sep missed narrowly.
    q3 = add_quarter("2024-Q3", MONTHS[3], ROWS_PER_REGION_MONTH)
    targets.append(("2024-Q3", "Jul", _round_thousand_down(q3["Jul"] * 0.96)))
    targets.append(("2024-Q3", "Aug", _round_thousand_up(q3["Aug"] * 1.12)))
    targets.append(("2024-Q3", "Sep", _round_thousand_up(q3["Sep"] * 1.02)))

    # The current quarter: only October so far, targets for the whole quarter.
    add_quarter("2024-Q4", ("Oct",), _OTHER_ROWS_PER_REGION_MONTH)
    targets.extend(("2024-Q4", m, t) for m, t in zip(MONTHS[4], (330_000.0, 340_000.0, 380_000.0), strict=True))

    fd, tmp_name = tempfile.mkstemp(prefix=".sales-", suffix=".db", dir=path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp_name)
        try:
            with conn:
                conn.execute("CREATE TABLE sales (month TEXT, region TEXT, revenue REAL, quarter TEXT)")
                conn.execute("CREATE TABLE targets (quarter TEXT, month TEXT, target REAL)")
                conn.execute("CREATE INDEX sales_quarter ON sales (quarter)")
                conn.executemany("INSERT INTO sales VALUES (?, ?, ?, ?)", sales)
                conn.executemany("INSERT INTO targets VALUES (?, ?, ?)", targets)
        finally:
            conn.close()
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def normalize_quarter(quarter: str) -> tuple[int | None, int]:
    """Parse a quarter: ``"2024-Q3"`` (also ``"2024Q3"``, ``"Q3 2024"``, any case) or a bare ``"Q3"``.

    Returns:
        ``(year, quarter_number)``; `year` is None for a bare ``"Qn"``.

    Raises:
        SQLToolError: `quarter` is not in one of those forms.
    """
    match = _QUARTER_RE.match(quarter) if isinstance(quarter, str) else None
    if match is None:
        raise SQLToolError(f"invalid quarter {quarter!r}: use the form '2024-Q3' (or 'Q3' for the latest year)")
    year = match.group("year") or match.group("year2")
    return (int(year) if year else None), int(match.group("q") or match.group("q2"))


class SalesData:
    """The ``query_database`` and ``get_targets`` tools over a sales database.

    Args:
        db_path: A database made by `create_sales_db` (or with the same tables).
        max_rows: Row cap of the underlying `ReadOnlySQL`.
    """

    def __init__(self, db_path: str | Path, *, max_rows: int = 1000) -> None:
        self.sql = ReadOnlySQL(db_path, max_rows=max_rows)
        schema = self.sql.schema()
        missing = [t for t in _TABLES if t not in schema]
        if missing:
            raise ValueError(f"{db_path}: not a sales database (missing tables {missing})")
        self.columns: dict[str, list[str]] = {t: schema[t] for t in _TABLES}

    def _resolve_quarter(self, table: str, quarter: str) -> str:
        """``"YYYY-Qn"`` for `quarter`; a bare ``"Qn"`` means the latest year with data in `table`."""
        year, number = normalize_quarter(quarter)
        if year is not None:
            resolved = f"{year:04d}-Q{number}"
        else:
            rows = self.sql.query(
                f'SELECT max(quarter) AS latest FROM "{table}" WHERE quarter LIKE ?', [f"%-Q{number}"]
            )
            if not rows or rows[0]["latest"] is None:
                raise SQLToolError(f"no {table} data for Q{number} in any year ({self._available(table)})")
            resolved = str(rows[0]["latest"])
        return resolved

    def _available(self, table: str) -> str:
        rows = self.sql.query(f'SELECT DISTINCT quarter FROM "{table}" ORDER BY quarter')
        return "available quarters: " + ", ".join(str(r["quarter"]) for r in rows)

    # ------------------------------------------------------------------ tools

    def query_database(
        self, table: Literal["sales", "targets"], quarter: str, fields: list[str]
    ) -> list[dict[str, Any]]:
        """Fetch the rows of one quarter from the sales or targets table, with the requested fields.

        Table "sales" has one row per sale with columns month (e.g. "Jul"), region ("North", "South", "East" or
        "West"), revenue (a number) and quarter (e.g. "2024-Q3"); table "targets" has one revenue target per
        month with columns quarter, month and target. Rows are returned one dict per row and are not
        aggregated: sum them yourself. A quarter without data is an error that lists the available quarters.

        Args:
            table: Which table to read: "sales" or "targets".
            quarter: The quarter, as "2024-Q3"; a bare "Q3" means the latest year that has Q3 data.
            fields: Column names to return, e.g. ["month", "region", "revenue"]; an empty list returns all columns.

        Returns:
            One dict per row, with exactly the requested fields, in storage order.

        Raises:
            SQLToolError: Unknown table or field, malformed quarter, or no data for the quarter.
        """
        if table not in _TABLES:
            raise SQLToolError(f"unknown table {table!r}: use 'sales' or 'targets'")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise SQLToolError("fields must be a list of column names")
        columns = self.columns[table]
        unknown = [f for f in fields if f not in columns]
        if unknown:
            raise SQLToolError(f"unknown field(s) {unknown} for table {table!r}; its columns are {columns}")
        selected = list(dict.fromkeys(fields)) or columns
        resolved = self._resolve_quarter(table, quarter)
        # Identifiers come from the table's own column list (checked above), values are bound.
        column_sql = ", ".join(f'"{c}"' for c in selected)
        rows = self.sql.query(f'SELECT {column_sql} FROM "{table}" WHERE quarter = ? ORDER BY rowid', [resolved])
        if not rows:
            raise SQLToolError(f"no {table} data for quarter {resolved} ({self._available(table)})")
        return rows

    def get_targets(self, quarter: str) -> list[dict[str, Any]]:
        """Get the monthly revenue targets of a quarter.

        Returns one dict per month in calendar order, like {"month": "Jul", "target": 290000.0}. A quarter
        without targets is an error that lists the available quarters.

        Args:
            quarter: The quarter, as "2024-Q3"; a bare "Q3" means the latest year that has Q3 targets.

        Returns:
            One dict per month, in calendar order.

        Raises:
            SQLToolError: Malformed quarter, or no targets for the quarter.
        """
        rows = self.query_database("targets", quarter, ["month", "target"])
        return sorted(rows, key=lambda row: _MONTH_ORDER.get(str(row["month"]), len(_MONTH_ORDER)))


def register(registry: Any, db_path: str | Path) -> SalesData:
    """Register ``query_database`` and ``get_targets`` over the database at `db_path`.

    Args:
        registry: The tool registry (anything with ``tool(name=..., timeout_s=...)``).
        db_path: The sales database (see `create_sales_db`).

    Returns:
        The `SalesData` behind the tools.
    """
    data = SalesData(db_path)
    backstop = data.sql.timeout_s * 3 + 5.0  # a tool call may run up to three queries
    registry.tool(name="query_database", timeout_s=backstop)(data.query_database)
    registry.tool(name="get_targets", timeout_s=backstop)(data.get_targets)
    return data
