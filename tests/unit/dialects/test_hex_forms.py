"""MySQL's hex() as rewritten by czar.dialects.forms, run by DuckDB on typed columns."""

from __future__ import annotations

import duckdb
import sqlglot

from czar.dialects.forms import rewrite


def _run(sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (b BLOB, v VARCHAR, d DOUBLE, i BIGINT)")
    con.execute("INSERT INTO t VALUES ('\\xAB\\x00z'::BLOB, 'héllo', -3.5, -1), (NULL, NULL, NULL, NULL)")
    tree = rewrite(sqlglot.parse_one(sql, read="mysql"), bits=True)
    return con.execute(tree.sql("duckdb")).fetchall()


def test_hex_of_blob_is_its_bytes_upper_case() -> None:
    assert _run("SELECT hex(b) FROM t") == [("AB007A",), (None,)]


def test_hex_of_string_number_and_double_keep_their_meaning() -> None:
    assert _run("SELECT hex(v), hex(i), hex(d) FROM t LIMIT 1") == [
        ("68C3A96C6C6F", "FFFFFFFFFFFFFFFF", "FFFFFFFFFFFFFFFC")
    ]
