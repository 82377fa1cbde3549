"""Real psycopg 3 against the pgwire server (DuckDB-backed handler)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from pgwire_helpers import DuckHandler

TYPES_SQL = """
SELECT 1::TINYINT AS i1, 2::SMALLINT AS i2, 3::INTEGER AS i4, 4::BIGINT AS i8,
       200::UTINYINT AS u1, 4000000000::UINTEGER AS u4, 18446744073709551615::UBIGINT AS u8,
       170141183460469231731687303715884105727::HUGEINT AS huge, 12.50::DECIMAL(10,2) AS dec,
       1.5::REAL AS f4, 0.1::DOUBLE AS f8, 'infinity'::DOUBLE AS inf, 'nan'::DOUBLE AS nan,
       true AS b, 'h''é' AS s, '\\x00\\xFF'::BLOB AS blob, DATE '2024-02-29' AS d,
       TIMESTAMP '2024-02-29 12:34:56.5' AS ts, TIMESTAMPTZ '2024-02-29 12:34:56+00' AS tstz,
       TIME '01:02:03' AS t, INTERVAL '1 year 2 months 3 days 4 hours' AS iv, NULL AS n
"""

EXPECTED = {
    "i1": 1,
    "i2": 2,
    "i4": 3,
    "i8": 4,
    "u1": 200,
    "u4": 4000000000,
    "u8": 18446744073709551615,
    "huge": 170141183460469231731687303715884105727,
    "dec": Decimal("12.50"),
    "f4": 1.5,
    "f8": 0.1,
    "inf": float("inf"),
    "b": True,
    "s": "h'é",
    "blob": b"\x00\xff",
    "d": dt.date(2024, 2, 29),
    "ts": dt.datetime(2024, 2, 29, 12, 34, 56, 500000),
    "tstz": dt.datetime(2024, 2, 29, 12, 34, 56, tzinfo=dt.UTC),
    "t": dt.time(1, 2, 3),
    "iv": dt.timedelta(days=365 + 60 + 3, hours=4),
    "n": None,
}


@pytest.mark.parametrize("binary", [False, True])
def test_types_text_and_binary(dsn: str, binary: bool) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor(binary=binary)
        cur.execute(TYPES_SQL)
        assert cur.description is not None
        row = dict(zip([c.name for c in cur.description], cur.fetchone() or (), strict=True))
        nan = row.pop("nan")
        assert nan != nan
        if binary:  # psycopg's binary numeric loader keeps 28 significant digits; text is exact
            assert str(row.pop("huge")).startswith("17014118346046923173168730")
            row["huge"] = EXPECTED["huge"]
        assert {k: int(v) if k in ("huge", "u8") else v for k, v in row.items()} == EXPECTED
        types = {c.name: c.type_code for c in cur.description}
        assert types["i1"] == 21 and types["i4"] == 23 and types["i8"] == 20 and types["huge"] == 1700
        assert types["f4"] == 700 and types["b"] == 16 and types["blob"] == 17 and types["n"] == 25


def test_server_parameters(dsn: str, handler: DuckHandler) -> None:
    with psycopg.connect(dsn + " options='-c search_path=sky'") as conn:
        assert conn.info.server_version == 160000
        assert conn.info.parameter_status("TimeZone") == "UTC"
        assert conn.info.parameter_status("application_name") == "tests"
        pid = conn.info.backend_pid
        conn.execute("SELECT 1")
    session = next(s for s in handler.seen if s.process_id == pid)
    assert (session.user, session.database, session.application_name) == ("qserv", "sky", "tests")
    assert session.parameters["search_path"] == "sky"
    for _ in range(100):  # the server notices the disconnect asynchronously
        if pid in handler.closed:
            break
        time.sleep(0.05)
    assert pid in handler.closed


def test_parameters_of_several_types(dsn: str) -> None:
    values = [
        7,
        -3,
        2.5,
        Decimal("-12.345"),
        True,
        "it's $1 -- not a comment",
        dt.date(2020, 1, 2),
        dt.datetime(2020, 1, 2, 3, 4, 5),
        b"\x00\x01'",
        None,
    ]
    sql = "SELECT %s, 10-%s, %s, %s, %s, %s, %s, %s, %s, %s, '$1 stays' AS lit"
    with psycopg.connect(dsn, autocommit=True) as conn:
        for fmt in ("%s", "%b", "%t"):
            row = conn.execute(sql.replace("%s", fmt), values).fetchone()
            assert row is not None
            assert row[0] == 7 and row[1] == 13 and row[2] == 2.5 and Decimal(row[3]) == Decimal("-12.345")
            assert row[4] in (True, "t", "true") and row[5] == values[5]
            assert str(row[6]) == "2020-01-02" and str(row[7]).startswith("2020-01-02 03:04:05")
            assert bytes(row[8]) == b"\x00\x01'" and row[9] is None and row[10] == "$1 stays"


def test_where_parameters_and_prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in (5, 6, 7):
            cur = conn.execute("SELECT name FROM stars WHERE id = %s AND mag > %s", (i, 0.1), prepare=True)
            assert cur.fetchall() == [(f"star{i}",)]
        assert conn.execute("SELECT count(*) FROM stars WHERE name LIKE %s", ("star1%",)).fetchone() == (12,)


def test_executemany_and_fetchmany(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE pairs (a INTEGER, b VARCHAR)")
        cur.executemany("INSERT INTO pairs VALUES (%s, %s)", [(i, f"v{i}") for i in range(20)])
        cur.execute("SELECT a, b FROM pairs ORDER BY a")
        assert cur.fetchmany(3) == [(0, "v0"), (1, "v1"), (2, "v2")]
        assert len(cur.fetchmany(100)) == 17
        cur.execute("DROP TABLE pairs")


def test_simple_protocol_multi_statement(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1 AS a; SELECT 'x;y' AS b, %s AS c", ("q'uote",))
        assert cur.fetchall() == [(1,)]
        assert cur.nextset()
        assert cur.fetchall() == [("x;y", "q'uote")]


def test_error_fields_and_recovery(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable) as info:
            conn.execute("SELECT * FROM no_such_table WHERE x = %s", (1,))
        diag = info.value.diag
        assert diag.sqlstate == "42P01" and diag.statement_position == "15"
        assert diag.message_detail == "the catalog has no such table" and diag.message_hint
        with pytest.raises(psycopg.errors.InternalError_) as internal:
            conn.execute("SELECT * FROM duck_catalog_error_table")
        assert "incident" in str(internal.value) and "Traceback" not in str(internal.value)
        assert conn.execute("SELECT 42").fetchone() == (42,)


def test_simple_query_error_position_counts_from_whole_text(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable) as info:
            conn.execute("SELECT 1;  SELECT * FROM no_such_table")
        assert info.value.diag.statement_position == "26"


def test_transaction_status_and_failed_transaction(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:  # not autocommit: psycopg sends BEGIN
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT 2").fetchone() == (2,)
        conn.commit()


def test_cancel_slow_query(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                conn.execute("SELECT count(*) FROM range(1000000000000) t(i) WHERE i % 7 = 3")
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        # Cancel until it lands: the first request may arrive before DuckDB starts the query.
        for _ in range(100):
            time.sleep(0.2)
            conn.cancel_safe()
            worker.join(0.2)
            if not worker.is_alive():
                break
        worker.join(30)
        assert outcome and isinstance(outcome[0], psycopg.errors.QueryCanceled)
        assert outcome[0].diag.sqlstate == "57014"
        assert conn.execute("SELECT 3").fetchone() == (3,)


def test_cancel_with_wrong_key_is_ignored(dsn: str, server: object) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        import socket
        import struct

        port = conn.info.port
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(struct.pack("!iiii", 16, 80877102, conn.info.backend_pid, 12345))
            assert s.recv(10) == b""
        assert conn.execute("SELECT 4").fetchone() == (4,)
