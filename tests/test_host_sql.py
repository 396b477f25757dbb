"""The read-only SQL host function (`host_functions.sql.ReadOnlySQL`) against a real SQLite file."""

from __future__ import annotations

import hashlib
import inspect
import re
import sqlite3
import time
import typing
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydantic
import pytest
from conftest import RecordingRegistry
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from host_functions import sql as sql_module
from host_functions.sql import ReadOnlySQL, SQLToolError, register

N_ITEMS = 2000


def _make_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB)")
        conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?)",
            [(i, f"item-{i}", i * 1.5, bytes([i % 256, 0xFF])) for i in range(N_ITEMS)],
        )
        conn.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
        conn.executemany("INSERT INTO notes VALUES (?, ?)", [(i, "x" * 1000) for i in range(50)])
        conn.execute("CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10")
    conn.close()
    return path


def _fingerprint(path: Path) -> tuple[str, list[str], tuple[int, int]]:
    """Hash of the file, the directory listing, and the row counts (read through a separate connection)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    listing = sorted(p.name for p in path.parent.iterdir())
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        counts = (
            conn.execute("SELECT count(*) FROM items").fetchone()[0],
            conn.execute("SELECT count(*) FROM notes").fetchone()[0],
        )
    finally:
        conn.close()
    return digest, listing, counts


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return _make_db(tmp_path / "shop.db")


@pytest.fixture
def db(db_path: Path) -> ReadOnlySQL:
    return ReadOnlySQL(db_path, timeout_s=2.0)


# ------------------------------------------------------------------ success


def test_parameterized_select(db: ReadOnlySQL) -> None:
    rows = db.query("SELECT id, name, price FROM items WHERE id BETWEEN ? AND ? ORDER BY id", [3, 5])
    assert rows == [
        {"id": 3, "name": "item-3", "price": 4.5},
        {"id": 4, "name": "item-4", "price": 6.0},
        {"id": 5, "name": "item-5", "price": 7.5},
    ]


def test_params_of_every_type(db: ReadOnlySQL) -> None:
    rows = db.query("SELECT ? AS s, ? AS i, ? AS f, ? AS n", ["text", 7, 2.5, None])
    assert rows == [{"s": "text", "i": 7, "f": 2.5, "n": None}]
    assert db.query("SELECT name FROM items WHERE name = ?", ["item-9"]) == [{"name": "item-9"}]


def test_injection_through_params_is_just_a_value(db_path: Path, db: ReadOnlySQL) -> None:
    before = _fingerprint(db_path)
    assert db.query("SELECT id FROM items WHERE name = ?", ["x'; DROP TABLE items; --"]) == []
    assert _fingerprint(db_path) == before


def test_select_forms(db: ReadOnlySQL) -> None:
    assert db.query("  /* leading comment */ -- and another\n select 1 AS one") == [{"one": 1}]
    assert db.query("WITH t AS (SELECT 2 AS two) SELECT two FROM t") == [{"two": 2}]
    assert db.query("VALUES (1), (2)") == [{"column1": 1}, {"column1": 2}]
    recursive = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) SELECT sum(x) AS s FROM c"
    assert db.query(recursive) == [{"s": 15}]
    assert db.query("SELECT count(*) AS n FROM cheap") == [{"n": 7}]
    assert db.query("SELECT upper(name) AS u FROM items WHERE id = 1") == [{"u": "ITEM-1"}]
    assert db.query("SELECT 1 AS one;") == [{"one": 1}]  # one trailing ';' is still one statement


def test_aggregates(db: ReadOnlySQL) -> None:
    rows = db.query("SELECT count(*) AS n, sum(price) AS total FROM items")
    assert rows == [{"n": N_ITEMS, "total": sum(i * 1.5 for i in range(N_ITEMS))}]


def test_blobs_come_back_as_hex(db: ReadOnlySQL) -> None:
    assert db.query("SELECT data FROM items WHERE id = 1") == [{"data": "01ff"}]


def test_schema_lists_tables_and_views(db: ReadOnlySQL) -> None:
    assert db.schema() == {"cheap": ["id", "name"], "items": ["id", "name", "price", "data"], "notes": ["id", "body"]}
    assert db.columns("notes") == ["id", "body"]
    with pytest.raises(SQLToolError, match="does not exist"):
        db.columns("nope")


def test_reading_the_schema_table_is_allowed(db: ReadOnlySQL) -> None:
    names = {r["name"] for r in db.query("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert names == {"items", "notes"}


# ------------------------------------------------------------------ refusals

REFUSED: list[tuple[str, str]] = [
    ("DROP TABLE items", "only SELECT"),
    ("drop table if exists items", "only SELECT"),
    ("DELETE FROM items", "only SELECT"),
    ("UPDATE items SET price = 0", "only SELECT"),
    ("INSERT INTO items (id) VALUES (99999)", "only SELECT"),
    ("REPLACE INTO items (id) VALUES (1)", "only SELECT"),
    ("CREATE TABLE t (x)", "only SELECT"),
    ("CREATE TEMP TABLE t AS SELECT 1", "only SELECT"),
    ("ALTER TABLE items ADD COLUMN y", "only SELECT"),
    ("ATTACH DATABASE ':memory:' AS other", "only SELECT"),
    ("attach '/tmp/evil.db' as evil", "only SELECT"),
    ("DETACH DATABASE main", "only SELECT"),
    ("PRAGMA table_info(items)", "only SELECT"),
    ("PRAGMA writable_schema = ON", "only SELECT"),
    ("BEGIN", "only SELECT"),
    ("COMMIT", "only SELECT"),
    ("SAVEPOINT s", "only SELECT"),
    ("VACUUM", "only SELECT"),
    ("REINDEX", "only SELECT"),
    ("ANALYZE", "only SELECT"),
    ("EXPLAIN SELECT 1", "only SELECT"),
    # Writes smuggled behind WITH: caught by the authorizer.
    ("WITH x AS (SELECT 1) DELETE FROM items", "DELETE is not permitted"),
    ("WITH x AS (SELECT 1) INSERT INTO items (id) SELECT 100000 FROM x", "INSERT is not permitted"),
    ("WITH x AS (SELECT 1) UPDATE items SET price = 0", "UPDATE is not permitted"),
    ("WITH x AS (SELECT 1) REPLACE INTO items (id) VALUES (1)", "INSERT is not permitted"),
    ("WITH RECURSIVE x(n) AS (SELECT 1) DELETE FROM notes WHERE id IN (SELECT n FROM x)", "DELETE is not permitted"),
    # Several statements.
    ("SELECT 1; DROP TABLE items", "only one SQL statement"),
    ("SELECT 1; SELECT 2", "only one SQL statement"),
    ("SELECT 1;\n-- harmless?\nDELETE FROM items", "only one SQL statement"),
    # Dangerous functions.
    ("SELECT load_extension('/tmp/evil.so')", r"load_extension\(\) is not allowed"),
    ("SELECT LOAD_EXTENSION('x', 'entry')", "not allowed"),
    ("SELECT fts3_tokenizer('simple')", r"fts3_tokenizer\(\) is not allowed"),
    # Pragmas as table-valued functions, the temp schema.
    ("SELECT * FROM pragma_table_info('items')", "table-valued functions"),
    ("SELECT * FROM pragma_database_list", "table-valued functions"),
    ("SELECT * FROM json_each('[1, 2]')", "table-valued functions"),
    ("SELECT * FROM temp.sqlite_master", "cannot be read"),
]


@pytest.mark.parametrize(("sql", "message"), REFUSED)
def test_refused(db_path: Path, db: ReadOnlySQL, sql: str, message: str) -> None:
    before = _fingerprint(db_path)
    with pytest.raises(SQLToolError, match=message):
        db.query(sql)
    assert _fingerprint(db_path) == before


def test_sql_tool_error_is_a_value_error() -> None:
    assert issubclass(SQLToolError, ValueError)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DROP TABLE items", "schema changes"),
        ("DELETE FROM items", "DELETE is not permitted"),
        ("INSERT INTO items (id) VALUES (99999)", "INSERT is not permitted"),
        ("CREATE TEMP VIEW v AS SELECT 1", "schema changes"),
        ("ATTACH DATABASE ':memory:' AS other", "ATTACH/DETACH is not allowed"),
        ("DETACH DATABASE main", "ATTACH/DETACH is not allowed"),
        ("PRAGMA writable_schema = ON", "PRAGMA is not allowed"),
        ("BEGIN IMMEDIATE", "transactions"),
        ("SAVEPOINT s", "transactions"),
        ("ANALYZE", "schema changes"),
        ("ALTER TABLE items RENAME TO gone", "ALTER TABLE is not permitted"),
    ],
)
def test_authorizer_refuses_even_without_the_keyword_check(
    monkeypatch: pytest.MonkeyPatch, db_path: Path, db: ReadOnlySQL, sql: str, message: str
) -> None:
    """Defence in depth: with the first-keyword check disabled, the authorizer still refuses."""
    monkeypatch.setattr(sql_module, "_first_keyword", lambda _sql: "SELECT")
    before = _fingerprint(db_path)
    with pytest.raises(SQLToolError, match=message):
        db.query(sql)
    assert _fingerprint(db_path) == before


def test_vacuum_into_writes_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db: ReadOnlySQL) -> None:
    """``VACUUM INTO`` works on read-only connections in plain SQLite; here it must not create the file."""
    target = tmp_path / "copy.db"
    with pytest.raises(SQLToolError, match="only SELECT"):
        db.query(f"VACUUM INTO '{target}'")
    monkeypatch.setattr(sql_module, "_first_keyword", lambda _sql: "SELECT")
    with pytest.raises(SQLToolError, match="ATTACH/DETACH is not allowed"):
        db.query(f"VACUUM INTO '{target}'")
    assert not target.exists()


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("SELECT * FROM nope", None, r"table 'nope' does not exist \(available tables: cheap, items, notes\)"),
        ("SELECT nope FROM items", None, "column 'nope' does not exist"),
        ("SELECT nope(1)", None, r"function nope\(\) does not exist"),
        ("SELEC 1", None, "only SELECT statements"),
        ("SELECT FROM WHERE", None, "syntax error"),
        ("SELECT 1 +", None, "syntax error"),
        ("SELECT ?", None, "wrong number of params"),
        ("SELECT ?", [1, 2], "wrong number of params"),
        ("SELECT ?", [2**70], "invalid query or parameter"),
        ("SELECT 1 AS a, 2 AS a", None, "duplicate column names"),
        ("", None, "empty"),
        ("   -- just a comment", None, "empty"),
        ("SELECT '\x00'", None, "null character"),
        ("SELECT '\ud800'", None, "invalid query"),
    ],
)
def test_clear_errors(db: ReadOnlySQL, sql: str, params: list[Any] | None, message: str) -> None:
    with pytest.raises(SQLToolError, match=message):
        db.query(sql, params)


@pytest.mark.parametrize("params", [{"a": 1}, "abc", [[1]], [{"a": 1}], [b"bytes"], 5])
def test_bad_params_refused(db: ReadOnlySQL, params: Any) -> None:
    with pytest.raises(SQLToolError, match="params"):
        db.query("SELECT ?", params)


def test_sql_must_be_text(db: ReadOnlySQL) -> None:
    with pytest.raises(SQLToolError, match="string"):
        db.query(b"SELECT 1")  # type: ignore[arg-type]


def test_missing_database_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ReadOnlySQL(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(SQLToolError):
        ReadOnlySQL(bogus)


@pytest.mark.parametrize("kwargs", [{"max_rows": 0}, {"max_result_bytes": 0}, {"timeout_s": 0}, {"timeout_s": -1}])
def test_bad_configuration(db_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReadOnlySQL(db_path, **kwargs)


# ------------------------------------------------------------------ caps


def test_row_cap_is_an_error_not_a_truncation(db_path: Path) -> None:
    db = ReadOnlySQL(db_path, max_rows=100)
    assert len(db.query("SELECT id FROM items LIMIT 100")) == 100
    with pytest.raises(SQLToolError, match="more than 100 rows: add a LIMIT"):
        db.query("SELECT id FROM items LIMIT 101")
    with pytest.raises(SQLToolError, match="more than 100 rows"):
        db.query("SELECT id FROM items")


def test_default_row_cap(db: ReadOnlySQL) -> None:
    assert db.max_rows == 1000
    assert len(db.query("SELECT id FROM items LIMIT 1000")) == 1000
    with pytest.raises(SQLToolError, match="more than 1000 rows"):
        db.query("SELECT id FROM items")


def test_result_size_cap(db_path: Path) -> None:
    db = ReadOnlySQL(db_path, max_result_bytes=20_000)
    assert len(db.query("SELECT body FROM notes LIMIT 10")) == 10  # ~10 kB
    with pytest.raises(SQLToolError, match="larger than 20000 bytes"):
        db.query("SELECT body FROM notes")  # ~50 kB


def test_single_huge_value_is_refused_inside_sqlite(db_path: Path) -> None:
    db = ReadOnlySQL(db_path, max_result_bytes=100_000)
    for sql in (
        "SELECT zeroblob(500000000) AS z",
        "SELECT randomblob(10000000) AS r",
        "SELECT 'x' || zeroblob(200000)",
    ):
        with pytest.raises(SQLToolError, match="too large"):
            db.query(sql)
    # printf() yields NULL instead of a string longer than the limit.
    assert db.query("SELECT printf('%.*c', 10000000, 'x') AS p") == [{"p": None}]


def test_time_cap_aborts_long_queries(db_path: Path) -> None:
    db = ReadOnlySQL(db_path, timeout_s=0.5)
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c"
    start = time.monotonic()
    with pytest.raises(SQLToolError, match="time limit"):
        db.query(endless)
    assert time.monotonic() - start < 3.0
    slow_join = "SELECT count(*) AS n FROM items a, items b, items c"
    with pytest.raises(SQLToolError, match="time limit"):
        db.query(slow_join)
    assert db.query("SELECT 1 AS ok") == [{"ok": 1}]  # the tool is still usable


def test_sql_length_cap(db: ReadOnlySQL) -> None:
    with pytest.raises(SQLToolError, match="too long"):
        db.query("SELECT 1" + " " * sql_module.MAX_SQL_CHARS)


# ------------------------------------------------------------------ threads, isolation


def test_concurrent_queries_from_threads(db: ReadOnlySQL) -> None:
    def work(i: int) -> list[dict[str, Any]]:
        return db.query("SELECT id, name FROM items WHERE id = ?", [i])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(200)))
    assert results == [[{"id": i, "name": f"item-{i}"}] for i in range(200)]


def test_database_is_never_modified(db_path: Path, db: ReadOnlySQL) -> None:
    before = _fingerprint(db_path)
    for sql, _ in REFUSED:
        with pytest.raises(SQLToolError):
            db.query(sql)
    db.query("SELECT * FROM items LIMIT 10")
    assert _fingerprint(db_path) == before


def test_sees_host_side_changes(db_path: Path, db: ReadOnlySQL) -> None:
    """Connections are per call, so a host-side update is visible to the next query."""
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE items SET name = 'renamed' WHERE id = 1")
    conn.close()
    assert db.query("SELECT name FROM items WHERE id = 1") == [{"name": "renamed"}]


def test_register_uses_the_registry_decorator(db_path: Path) -> None:
    registry = RecordingRegistry()
    sql = register(registry, db_path)
    assert set(registry.tools) == {"sql_query", "sql_schema"}
    query, options = registry.tools["sql_query"]
    assert options["timeout_s"] > sql.timeout_s
    assert query("SELECT count(*) AS n FROM items") == [{"n": N_ITEMS}]
    assert "items" in registry.tools["sql_schema"][0]()


# ------------------------------------------------------------------ property

_TOKENS = [
    "SELECT", "WITH", "RECURSIVE", "VALUES", "FROM", "WHERE", "AS", "(", ")", ",", ";", "*", "=", "?", "'x'",
    "items", "notes", "cheap", "id", "name", "price", "main", "temp", "sqlite_master", "x",
    "DELETE", "INSERT", "INTO", "UPDATE", "SET", "DROP", "TABLE", "CREATE", "ALTER", "ATTACH", "DETACH",
    "DATABASE", "PRAGMA", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "VACUUM", "REPLACE", "TRIGGER",
    "VIEW", "INDEX", "load_extension('x')", "zeroblob(100)", "UNION", "ALL", "LIMIT", "1", "2", "--", "/*", "*/",
    "':memory:'", "writable_schema", "ON", "OFF", "0", "NULL", "count(*)", "pragma_table_info('items')",
]  # fmt: skip

#: Complete statements, harmless and hostile, that the strategies below combine and mutate.
_VALID_STATEMENTS = [
    "SELECT * FROM items LIMIT 3",
    "SELECT id, name FROM items WHERE id = ?",
    "SELECT count(*) FROM notes",
    "SELECT * FROM cheap",
    "SELECT name FROM sqlite_master",
    "VALUES (1, 'a')",
    "WITH t(n) AS (SELECT 1) SELECT n FROM t",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 50) SELECT x FROM c",
    "SELECT * FROM items a JOIN notes b ON a.id = b.id LIMIT 5",
    "SELECT id AS a FROM items WHERE id < 5 UNION ALL SELECT id FROM notes WHERE id < 5",
]
_STATEMENTS = (
    [sql for sql, _ in REFUSED]
    + _VALID_STATEMENTS
    + [
        "UPDATE sqlite_master SET sql = 'x'",
        "INSERT INTO sqlite_master VALUES ('table', 't', 't', 0, 'CREATE TABLE t(x)')",
        "CREATE TRIGGER tr AFTER INSERT ON items BEGIN DELETE FROM notes; END",
        "CREATE VIRTUAL TABLE v USING fts5(x)",
        "DROP VIEW cheap",
        "DROP INDEX IF EXISTS i",
        "PRAGMA query_only = OFF",
        "PRAGMA journal_mode = DELETE",
        "ROLLBACK",
        "RELEASE s",
        "END",
        "VACUUM INTO '/tmp/wasmrun-hypothesis-copy.db'",
    ]
)


def _mutate(sql: str, case: str, comment: str) -> str:
    sql = sql.upper() if case == "upper" else sql.lower() if case == "lower" else sql
    return f"{comment}{sql}"


_statement = st.builds(
    _mutate,
    st.sampled_from(_STATEMENTS),
    st.sampled_from(["upper", "lower", "keep"]),
    st.sampled_from(["", "/* c */ ", "-- c\n", "\n\t ", "/**/"]),
)
_sql_text = st.one_of(
    st.text(max_size=200),
    _statement,
    st.builds(_mutate, st.sampled_from(_VALID_STATEMENTS), st.just("keep"), st.sampled_from(["", "-- c\n"])),
    st.builds(lambda a, sep, b: f"{a}{sep}{b}", _statement, st.sampled_from([";", "; ", ";\n-- x\n", " "]), _statement),
    st.builds(lambda body: f"WITH x AS (SELECT 1 AS n) {body}", _statement),
    st.lists(st.sampled_from(_TOKENS), max_size=25).map(" ".join),
    st.builds(
        lambda prefix, body: f"{prefix} {body}",
        st.sampled_from(["SELECT 1;", "WITH x AS (SELECT 1)", "SELECT", "/* c */ SELECT", "VALUES (1);"]),
        st.lists(st.sampled_from(_TOKENS), max_size=15).map(" ".join),
    ),
)
_params = st.one_of(
    st.none(),
    st.just([]),
    st.just([1]),
    st.lists(
        st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20), st.booleans()),
        max_size=4,
    ),
)


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReadOnlySQL]:
    path = _make_db(tmp_path_factory.mktemp("prop") / "shop.db")
    return path, ReadOnlySQL(path, timeout_s=0.3, max_result_bytes=200_000)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sql=_sql_text, params=_params)
def test_arbitrary_sql_only_raises_sql_tool_error_and_never_writes(
    shared_db: tuple[Path, ReadOnlySQL], sql: str, params: list[Any] | None
) -> None:
    path, db = shared_db
    before = _fingerprint(path)
    try:
        rows = db.query(sql, params)
    except SQLToolError as exc:
        event(f"refused: {str(exc).split(':')[0][:40]}")
    else:
        event("accepted")
        assert isinstance(rows, list)
        assert all(isinstance(row, dict) for row in rows)
        assert len(rows) <= db.max_rows
    assert _fingerprint(path) == before


def _check_registry_ready(func: Callable[..., Any]) -> None:
    """What the registry derives from a tool: resolvable hints, buildable schemas, documented parameters."""

    hints = typing.get_type_hints(func, include_extras=True)
    params = inspect.signature(func).parameters
    fields: dict[str, Any] = {
        name: (hints[name], ... if p.default is inspect.Parameter.empty else p.default) for name, p in params.items()
    }
    pydantic.create_model(f"{func.__name__}_args", **fields).model_json_schema()
    pydantic.TypeAdapter(hints["return"]).json_schema()
    doc = inspect.getdoc(func) or ""
    assert doc.split("\n\n")[0].strip(), "the first paragraph is the tool description"
    args = re.search(r"^Args:\n((?:    .*\n?)+)", doc, re.MULTILINE)
    documented = set(re.findall(r"^    (\w+):", args.group(1), re.MULTILINE)) if args else set()
    assert documented == set(params), (func.__name__, documented, set(params))


def test_tools_are_registry_ready(db: ReadOnlySQL) -> None:
    _check_registry_ready(db.query)
    _check_registry_ready(db.schema)
    assert "more than 1000 rows" in db.query_description()
