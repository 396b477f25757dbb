"""A read-only SQL query tool over a real SQLite database.

`ReadOnlySQL` lets guest code run ``SELECT`` statements against a SQLite file
on the host, and nothing else. Several independent layers enforce that:

1. The database is opened with a ``file:...?mode=ro`` URI, so SQLite itself
   refuses to write to it; ``PRAGMA query_only`` and ``trusted_schema=OFF``
   are set on top, and ``ATTACH`` is disabled via ``SQLITE_LIMIT_ATTACHED=0``.
2. The statement must start (after comments) with ``SELECT``, ``WITH`` or
   ``VALUES``; everything else (``PRAGMA``, ``ATTACH``, ``VACUUM``,
   ``EXPLAIN``, DDL, DML, ``BEGIN``...) is refused before SQLite sees it.
3. An authorizer (`sqlite3.Connection.set_authorizer`) admits only the
   ``SELECT``, ``READ``, ``FUNCTION`` and ``RECURSIVE`` (recursive CTE)
   actions while the statement is compiled, and denies a list of dangerous
   functions (``load_extension``, ``fts3_tokenizer``, ...). This is what
   catches writes smuggled in a CTE (``WITH x AS (...) DELETE ...``),
   ``VACUUM INTO`` and table-valued pragma functions.
4. Only one statement per call (the `sqlite3` module refuses a second one
   before it is compiled) and parameters are always bound, never formatted.

Resource caps: at most ``max_rows`` rows (a larger result is an error that
asks for a ``LIMIT`` or an aggregate; results are never silently truncated),
an approximate result size of ``max_result_bytes`` (also the largest string or
blob SQLite may build while evaluating the query), and a wall-clock budget of
``timeout_s`` enforced by a progress handler that aborts the query. Memory
used *inside* SQLite (sorting, temp B-trees) is bounded only indirectly, by
the time cap.

Every failure is raised as `SQLToolError` (a `ValueError`) with a message
meant for the model that wrote the query. A fresh connection is opened for
each call, so one `ReadOnlySQL` may be used from many threads at once.
"""

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from ._doc import tool_description

__all__ = ["DENIED_FUNCTIONS", "ReadOnlySQL", "SQLToolError", "register"]


class SQLToolError(ValueError):
    """A query was refused or failed; the message says why (for the caller)."""


#: SQL functions that are refused even inside a SELECT. ``load_extension``
#: would load native code; ``fts3_tokenizer`` can take a raw pointer; the rest
#: are file-system functions of the sqlite3 shell/extensions, listed in case
#: the linked SQLite provides them.
DENIED_FUNCTIONS: frozenset[str] = frozenset(
    {
        "load_extension",
        "fts3_tokenizer",
        "readfile",
        "writefile",
        "edit",
        "fsdir",
        "lsmode",
        "zipfile",
        "sqlar_compress",
        "sqlar_uncompress",
        "sqlite_dbpage",
    }
)

#: First keywords a read-only statement may start with.
_ALLOWED_FIRST_KEYWORDS = frozenset({"SELECT", "WITH", "VALUES"})

#: Authorizer actions that a read-only statement needs.
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)

_WRITE_ACTIONS: dict[int, str] = {
    sqlite3.SQLITE_INSERT: "INSERT",
    sqlite3.SQLITE_UPDATE: "UPDATE",
    sqlite3.SQLITE_DELETE: "DELETE",
    sqlite3.SQLITE_CREATE_INDEX: "CREATE INDEX",
    sqlite3.SQLITE_CREATE_TABLE: "CREATE TABLE",
    sqlite3.SQLITE_CREATE_TEMP_INDEX: "CREATE TEMP INDEX",
    sqlite3.SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE",
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TEMP TRIGGER",
    sqlite3.SQLITE_CREATE_TEMP_VIEW: "CREATE TEMP VIEW",
    sqlite3.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER",
    sqlite3.SQLITE_CREATE_VIEW: "CREATE VIEW",
    sqlite3.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE",
    sqlite3.SQLITE_DROP_INDEX: "DROP INDEX",
    sqlite3.SQLITE_DROP_TABLE: "DROP TABLE",
    sqlite3.SQLITE_DROP_TEMP_INDEX: "DROP TEMP INDEX",
    sqlite3.SQLITE_DROP_TEMP_TABLE: "DROP TEMP TABLE",
    sqlite3.SQLITE_DROP_TEMP_TRIGGER: "DROP TEMP TRIGGER",
    sqlite3.SQLITE_DROP_TEMP_VIEW: "DROP TEMP VIEW",
    sqlite3.SQLITE_DROP_TRIGGER: "DROP TRIGGER",
    sqlite3.SQLITE_DROP_VIEW: "DROP VIEW",
    sqlite3.SQLITE_DROP_VTABLE: "DROP VIRTUAL TABLE",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE",
    sqlite3.SQLITE_REINDEX: "REINDEX",
    sqlite3.SQLITE_ANALYZE: "ANALYZE",
}

_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"})

#: Leading whitespace and SQL comments (``-- ...`` to end of line, ``/* ... */``).
_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.DOTALL)
_FIRST_WORD = re.compile(r"[A-Za-z_]+")

#: Cap on the length of the SQL text itself (characters).
MAX_SQL_CHARS = 100_000
#: Cap on the number of bound parameters.
MAX_PARAMS = 1_000
#: Bytes counted per non-text value when estimating the result size.
_SCALAR_BYTES = 8
#: How many SQLite VM instructions run between two deadline checks.
_PROGRESS_STEPS = 1_000

SQLParam = str | int | float | None


def _first_keyword(sql: str) -> str:
    """The first keyword of `sql` after whitespace and comments, upper-cased ('' if none)."""
    noise = _LEADING_NOISE.match(sql)  # always matches (possibly the empty string)
    rest = sql[noise.end() :] if noise else sql
    match = _FIRST_WORD.match(rest)
    return match.group(0).upper() if match else ""


class _Authorizer:
    """SQLite authorizer callback that admits read-only actions and records the first refusal."""

    def __init__(self) -> None:
        self.denied: tuple[int, str | None, str | None] | None = None

    def __call__(self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
        allowed = action in _ALLOWED_ACTIONS
        if action == sqlite3.SQLITE_FUNCTION and arg2 is not None and arg2.lower() in DENIED_FUNCTIONS:
            allowed = False
        if action == sqlite3.SQLITE_READ and db not in (None, "main"):
            allowed = False  # only the configured database (no temp tables, no attached databases)
        if allowed:
            return sqlite3.SQLITE_OK
        if self.denied is None:
            self.denied = (action, arg1, arg2)
        return sqlite3.SQLITE_DENY

    def message(self) -> str:
        """A caller-facing explanation of the first refused action."""
        assert self.denied is not None
        action, arg1, arg2 = self.denied
        if action == sqlite3.SQLITE_FUNCTION:
            return f"function {arg2}() is not allowed"
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return "ATTACH/DETACH is not allowed: only the configured database can be queried"
        if action == sqlite3.SQLITE_PRAGMA:
            return "PRAGMA is not allowed (including table-valued pragma functions such as pragma_table_info())"
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            return "transactions (BEGIN/COMMIT/ROLLBACK/SAVEPOINT) are not allowed"
        if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE) and arg1 in _SCHEMA_TABLES:
            # SQLite checks the write to the schema table first, for DDL and for table-valued functions alike.
            return (
                "only SELECT statements are allowed: schema changes (CREATE, DROP, ALTER, ANALYZE, ...) and "
                "table-valued functions (json_each(), pragma_*(), ...) are not permitted"
            )
        if action == sqlite3.SQLITE_READ:
            return f"table {arg1!r} cannot be read: only tables of the configured database can be queried"
        if action in _WRITE_ACTIONS:
            return f"only SELECT statements are allowed: {_WRITE_ACTIONS[action]} is not permitted (read-only database)"
        return "only SELECT statements are allowed: this operation is not permitted"


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    return _SCALAR_BYTES


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class ReadOnlySQL:
    """Read-only, capped, parameterized SELECT access to one SQLite database file.

    Args:
        path: The SQLite database file. It must exist; it is never written.
        max_rows: Largest number of rows a query may return. A query that
            would return more raises `SQLToolError` (add ``LIMIT`` or
            aggregate); results are never silently truncated.
        max_result_bytes: Largest approximate size of a result (text in
            UTF-8 bytes, 8 bytes per number/NULL, plus column names per row).
            Also the largest string/blob SQLite may build during the query.
        timeout_s: Wall-clock budget of one query, including fetching rows.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_rows: int = 1000,
        max_result_bytes: int = 1_000_000,
        timeout_s: float = 5.0,
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if max_result_bytes < 1:
            raise ValueError("max_result_bytes must be at least 1")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"SQLite database not found: {self.path}")
        self.max_rows = max_rows
        self.max_result_bytes = max_result_bytes
        self.timeout_s = float(timeout_s)
        self._uri = self.path.as_uri() + "?mode=ro"
        # Fail now, on the host, if the file is not a readable SQLite database.
        conn = self._host_connection()
        try:
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        except sqlite3.Error as exc:
            raise SQLToolError(f"{self.path} is not a readable SQLite database: {exc}") from None
        finally:
            conn.close()

    def __repr__(self) -> str:
        return f"ReadOnlySQL({str(self.path)!r}, max_rows={self.max_rows}, timeout_s={self.timeout_s})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False, timeout=1.0)
        conn.text_factory = _decode_text
        return conn

    def _host_connection(self) -> sqlite3.Connection:
        """A read-only connection for trusted host-side queries (no authorizer)."""
        try:
            return self._connect()
        except sqlite3.Error as exc:
            raise SQLToolError(f"cannot open the database: {exc}") from None

    # ------------------------------------------------------------------ tools

    def query(self, sql: str, params: list[str | int | float | None] | None = None) -> list[dict[str, Any]]:
        """Run one read-only SQLite SELECT statement and return its rows as a list of dicts.

        Only a single SELECT is accepted (it may start with WITH, or be a VALUES list); writes, PRAGMA, ATTACH,
        transactions and several ';'-separated statements are refused. Pass values in params and reference them
        with '?' placeholders instead of writing them into the SQL text. A result of more than 1000 rows is an
        error, not truncated: use LIMIT, WHERE or aggregate (GROUP BY, SUM, COUNT) in SQL. Each row maps column
        names to values; give computed columns unique names with AS. BLOB values come back as hex strings.

        Args:
            sql: A single SQLite SELECT statement, with '?' placeholders for values.
            params: Values for the '?' placeholders, in order.

        Returns:
            The result rows, one dict per row, in the order SQLite returns them.

        Raises:
            SQLToolError: The statement was refused or failed, or a limit was exceeded.
        """
        if not isinstance(sql, str):
            raise SQLToolError("sql must be a string")
        bound = self._check_params(params)
        if len(sql) > MAX_SQL_CHARS:
            raise SQLToolError(f"the SQL text is too long ({len(sql)} characters, at most {MAX_SQL_CHARS})")
        keyword = _first_keyword(sql)
        if not keyword:
            raise SQLToolError("the query is empty: send one SELECT statement")
        if keyword not in _ALLOWED_FIRST_KEYWORDS:
            raise SQLToolError(f"only SELECT statements are allowed (got a statement starting with {keyword})")
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise SQLToolError(f"cannot open the database: {exc}") from None
        try:
            return self._run(conn, sql, bound)
        finally:
            conn.close()

    def schema(self) -> dict[str, list[str]]:
        """List the tables and views of the database with their column names, in definition order.

        Returns:
            A dict from table (or view) name to its column names, in definition order.
        """
        conn = self._host_connection()
        try:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') "
                    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
                )
            ]
            return {
                name: [row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (name,))] for name in names
            }
        except sqlite3.Error as exc:
            raise SQLToolError(f"cannot read the schema: {exc}") from None
        finally:
            conn.close()

    def columns(self, table: str) -> list[str]:
        """Column names of `table` (host-side helper; raises `SQLToolError` if it does not exist)."""
        tables = self.schema()
        if table not in tables:
            raise SQLToolError(f"table {table!r} does not exist (available tables: {', '.join(tables) or 'none'})")
        return tables[table]

    def query_description(self) -> str:
        """The description of the query tool (its docstring before ``Args:``), with this instance's row limit."""
        return tool_description(self.query).replace("more than 1000 rows", f"more than {self.max_rows} rows")

    # -------------------------------------------------------------- internals

    @staticmethod
    def _check_params(params: Any) -> tuple[SQLParam, ...]:
        if params is None:
            return ()
        if not isinstance(params, list | tuple):
            raise SQLToolError("params must be a list of values for the '?' placeholders")
        if len(params) > MAX_PARAMS:
            raise SQLToolError(f"too many parameters ({len(params)}, at most {MAX_PARAMS})")
        for i, value in enumerate(params):
            if value is not None and not isinstance(value, str | int | float):
                raise SQLToolError(f"params[{i}] must be a string, number or null, not {type(value).__name__}")
        return tuple(params)

    def _set_limits(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_CHARS * 4)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(self.max_result_bytes, 1024))

    def _run(self, conn: sqlite3.Connection, sql: str, params: tuple[SQLParam, ...]) -> list[dict[str, Any]]:
        deadline = time.monotonic() + self.timeout_s
        timed_out = False

        def progress() -> int:
            nonlocal timed_out
            if time.monotonic() > deadline:
                timed_out = True
                return 1  # non-zero aborts the running statement
            return 0

        authorizer = _Authorizer()
        try:
            self._set_limits(conn)
            conn.set_authorizer(authorizer)
            conn.set_progress_handler(progress, _PROGRESS_STEPS)
            cursor = conn.execute(sql, params)
            if cursor.description is None:
                raise SQLToolError("the statement returns no rows: only SELECT statements are allowed")
            names = [col[0] for col in cursor.description]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise SQLToolError(
                    f"the result has duplicate column names {duplicates}: give each column a unique name with AS"
                )
            name_bytes = sum(len(n.encode("utf-8", "surrogatepass")) for n in names)
            rows: list[dict[str, Any]] = []
            size = 0
            for raw in cursor:
                if len(rows) >= self.max_rows:
                    raise SQLToolError(
                        f"the query returns more than {self.max_rows} rows: add a LIMIT clause, "
                        "filter with WHERE, or aggregate (GROUP BY, SUM, COUNT) in SQL"
                    )
                row = {n: (v.hex() if isinstance(v, bytes) else v) for n, v in zip(names, raw, strict=True)}
                size += name_bytes + sum(_value_size(v) for v in row.values())
                if size > self.max_result_bytes:
                    raise SQLToolError(
                        f"the result is larger than {self.max_result_bytes} bytes: select fewer columns or rows, "
                        "or aggregate in SQL"
                    )
                rows.append(row)
                if time.monotonic() > deadline:
                    timed_out = True
                    raise SQLToolError(self._timeout_message())
            return rows
        except (sqlite3.Error, sqlite3.Warning) as exc:
            if timed_out:
                raise SQLToolError(self._timeout_message()) from None
            if authorizer.denied is not None:
                raise SQLToolError(authorizer.message()) from None
            raise SQLToolError(self._explain(exc)) from None
        except (ValueError, OverflowError) as exc:  # e.g. a lone surrogate in the SQL, an int beyond 64 bits
            if isinstance(exc, SQLToolError):
                raise
            raise SQLToolError(f"invalid query or parameter: {exc}") from None

    def _timeout_message(self) -> str:
        return (
            f"the query took longer than the {self.timeout_s:g} s time limit and was aborted: "
            "simplify it, filter with WHERE, or add a LIMIT"
        )

    def _explain(self, exc: Exception) -> str:
        """Turn a sqlite3 error into a message for the model that wrote the query."""
        msg = str(exc)
        if msg.startswith("no such table: "):
            table = msg.removeprefix("no such table: ")
            try:
                available = ", ".join(self.schema()) or "none"
            except SQLToolError:
                available = "unknown"
            return f"table {table!r} does not exist (available tables: {available})"
        if msg.startswith("no such column: "):
            return f"column {msg.removeprefix('no such column: ')!r} does not exist"
        if msg.startswith("no such function: "):
            return f"function {msg.removeprefix('no such function: ')}() does not exist in SQLite"
        if "one statement at a time" in msg:
            return "only one SQL statement per query is allowed: remove the ';' and everything after it"
        if msg.startswith("Incorrect number of bindings"):
            return f"wrong number of params: {msg.removeprefix('Incorrect number of bindings supplied. ')}"
        if "syntax error" in msg or msg == "incomplete input" or msg.startswith("unrecognized token"):
            return f"SQL syntax error: {msg}"
        if "readonly database" in msg or msg == "not authorized":
            return f"only SELECT statements are allowed: {msg}"
        if "too big" in msg:
            return f"a value in the query is too large (at most {self.max_result_bytes} bytes): {msg}"
        return f"SQL error: {msg}"


def register(
    registry: Any,
    db: ReadOnlySQL | str | Path,
    *,
    query_name: str = "sql_query",
    schema_name: str = "sql_schema",
) -> ReadOnlySQL:
    """Register `ReadOnlySQL.query` and `ReadOnlySQL.schema` as tools.

    Args:
        registry: The tool registry (anything with ``tool(name=..., timeout_s=...)``).
        db: A `ReadOnlySQL`, or the path of a SQLite file to wrap with default limits.
        query_name: Tool name of the query function.
        schema_name: Tool name of the schema function.

    Returns:
        The `ReadOnlySQL` instance behind the tools.
    """
    sql = db if isinstance(db, ReadOnlySQL) else ReadOnlySQL(db)
    # The registry's own timeout is a backstop; the query's own cap fires first with a clearer message.
    registry.tool(name=query_name, description=sql.query_description(), timeout_s=sql.timeout_s + 5.0)(sql.query)
    registry.tool(name=schema_name, timeout_s=sql.timeout_s + 5.0)(sql.schema)
    return sql
