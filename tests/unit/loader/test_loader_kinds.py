"""The storage layout of match rows and of children without a director row (pure, no network)."""

from __future__ import annotations

import io
from pathlib import Path

import healpy as hp
import pyarrow as pa
import pytest

from loader.escapes import DumpStream
from loader.match import absent_keys, match_rows
from loader.partition import child_rows
from loader.read import Batch, InputFile, infer_schema, input_file, read_batches
from loader.spec import LoadSpec, parse_schema
from qserv.catalog import FLAG_COLUMN, Column, Partitioning, Table, TableKind
from qserv.errors import DataError, InvalidParameter

CSV = InputFile(Path("m.csv"), "csv")


def _match(flag: str | None) -> Table:
    cols = (Column("l", "BIGINT"), Column("r", "BIGINT")) + ((Column(flag, "INTEGER"),) if flag else ())
    return Table("sky", "M", TableKind.MATCH, cols, left_director="sky.A", left_column="l",
                 right_director="sky.B", right_column="r", flag_column=flag or FLAG_COLUMN)  # fmt: skip


def test_match_rows_are_stored_in_both_sides_chunks() -> None:
    data = pa.record_batch({"l": [1, 2, 3, 4, 5], "r": [10, 20, 30, 40, None]})
    left = pa.array([7, 8, None, 9, 6], pa.int32())
    right = pa.array([7, 5, 4, None, None], pa.int32())
    part = match_rows(Batch(CSV, 0, data), _match(None), left, right)
    got = sorted(zip(part.rows.column("l").to_pylist(), part.rows.column("_chunk").to_pylist(),
                     part.rows.column(FLAG_COLUMN).to_pylist(), strict=True))  # fmt: skip
    # (left key, chunk, flag): same chunk once (3); apart twice (1, 2); one side only (+4)
    assert got == [(1, 7, 3), (2, 5, 2), (2, 8, 1), (3, 4, 6), (4, 9, 5), (5, 6, 5)]
    assert part.chunks.tolist() == part.rows.column("_chunk").to_pylist()


def test_keys_of_absent_sides_are_staged_per_side() -> None:
    """(key, chunk of the only copy, side) of each key whose director row is absent; a NULL key
    names no row a later load could add, so it is not staged."""
    data = pa.record_batch({"l": [1, 2, 3, 4, 5], "r": ["a", "b", "c", "d", None]})
    left = pa.array([7, None, None, 9, 6], pa.int32())
    right = pa.array([7, 5, 4, None, None], pa.int32())
    got = [t.to_pylist() for t in absent_keys(Batch(CSV, 0, data), _match(None), left, right)]
    assert got == [
        [{"key": 2, "chunk": 5, "subchunk": 1}, {"key": 3, "chunk": 4, "subchunk": 1}],
        [{"key": "d", "chunk": 9, "subchunk": 2}],
    ]
    assert absent_keys(Batch(CSV, 0, data), _match(None), right.fill_null(1), right.fill_null(1)) == []


def test_match_flag_column_named_by_the_load_is_overwritten() -> None:
    data = pa.record_batch({"l": [1], "r": [10], "f": pa.array([99], pa.int32())})
    part = match_rows(Batch(CSV, 0, data), _match("f"), pa.array([3], pa.int32()), pa.array([4], pa.int32()))
    assert sorted(part.rows.column("f").to_pylist()) == [1, 2]
    assert part.rows.column_names == ["l", "r", "f", "_chunk"]


def test_match_row_with_neither_side_is_refused() -> None:
    data = pa.record_batch({"l": [1, 2], "r": [10, 20]})
    with pytest.raises(DataError, match=r"m.csv line 3: match row has neither side: no sky.A row has key 2 and no "
                       r"sky.B row has key 20"):  # fmt: skip
        match_rows(
            Batch(CSV, 0, data),
            _match(None),
            pa.array([1, None], pa.int32()),
            pa.array([1, None], pa.int32()),
        )


def test_children_without_director_row_go_to_their_own_chunk() -> None:
    spec = LoadSpec("http://h:1", "sky", "S", TableKind.CHILD, (CSV.path,), director="O", key_column="k",
                    lon_column="ra", lat_column="dec")  # fmt: skip
    ra, dec = [10.0, 200.0, 359.99], [5.0, -60.0, 89.9]
    data = pa.record_batch({"k": [1, 2, 3], "ra": ra, "dec": dec})
    own = hp.ang2pix(32, ra, dec, nest=True, lonlat=True).tolist()
    part = child_rows(Batch(CSV, 0, data), spec, pa.array([own[0], None, None], pa.int32()), Partitioning())
    assert part.rows.column("_chunk").to_pylist() == own
    # a director row two chunks away: refused naming the key (the overlap is 1 arcmin)
    far = int(hp.ang2pix(32, 14.0, 5.0, nest=True, lonlat=True))
    with pytest.raises(DataError, match=r"m.csv line 2: child row with key 1 lies [0-9.]+° from chunk "
                       rf"{far} of its O row, farther than the overlap 0.016667°"):  # fmt: skip
        child_rows(Batch(CSV, 0, data), spec, pa.array([far, None, None], pa.int32()), Partitioning())


@pytest.mark.parametrize(
    ("mysql", "duckdb"),
    [
        ("int(11) DEFAULT NULL", "INTEGER"), ("bigint(20) NOT NULL", "BIGINT"), ("tinyint(1)", "TINYINT"),
        ("tinyint(4)", "TINYINT"), ("smallint(6)", "SMALLINT"), ("mediumint(9)", "INTEGER"),
        ("int(10) unsigned", "UINTEGER"), ("bigint(20) unsigned", "UBIGINT"), ("tinyint unsigned", "UTINYINT"),
        ("bit(1) NOT NULL", "BOOLEAN"), ("bit(8)", "UBIGINT"), ("boolean", "BOOLEAN"), ("float", "FLOAT"),
        ("double DEFAULT NULL", "DOUBLE"), ("decimal(10,2)", "DECIMAL(10,2)"), ("char(4)", "VARCHAR"),
        ("varchar(255)", "VARCHAR"), ("text", "VARCHAR"), ("mediumtext", "VARCHAR"), ("blob", "BLOB"),
        ("longblob", "BLOB"), ("varbinary(100)", "BLOB"), ("binary(8)", "BLOB"),
        ("timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP", "TIMESTAMP"), ("datetime", "TIMESTAMP"), ("date", "DATE"),
    ],
)  # fmt: skip
def test_mysql_column_types(mysql: str, duckdb: str) -> None:
    columns, _ = parse_schema(
        f"CREATE TABLE `T` (\n  `x` {mysql},\n  KEY `k` (`x`)\n) ENGINE=MyISAM DEFAULT CHARSET=latin1;"
    )
    assert columns == (Column("x", duckdb),)


@pytest.mark.parametrize(
    ("sql", "duckdb"),
    [("BYTEA", "BLOB"), ("TIMESTAMP", "TIMESTAMP"), ("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"),
     ("INT8", "BIGINT"), ("HUGEINT", "HUGEINT"), ("INT(11)", "INTEGER"), ("DOUBLE PRECISION", "DOUBLE"),
     ("REAL", "FLOAT"), ("UBIGINT", "UBIGINT"), ("VARCHAR(3)", "VARCHAR"), ("BOOLEAN", "BOOLEAN")],
)  # fmt: skip
def test_duckdb_column_types(sql: str, duckdb: str) -> None:
    assert parse_schema(f"CREATE TABLE t (x {sql})")[0] == (Column("x", duckdb),)


def test_mysql_escapes_of_binary_fields_are_undone(tmp_path: Path) -> None:
    path = tmp_path / "b.tsv"
    path.write_bytes(b"id\tb\n1\t\\0a\\tb\\nc\\\\d\\Z\\re\xff\\x\n2\t\\N\n")
    f = input_file(path)
    schema = pa.schema([("id", pa.int64()), ("b", pa.binary())])
    rows = [r for batch in read_batches(f, schema) for r in batch.data.column(1).to_pylist()]
    assert rows == [b"\x00a\tb\nc\\d\x1a\re\xffx", None]
    assert infer_schema(f).field("b").type == pa.binary()  # not UTF-8: bytes


DUMP = (
    b'1\tsay "hi\\\ttab"\t\\0\\\t\\\\\xfe\t\x01\ta\\\nb\rc\n'  # quote, escaped TAB, NUL, backslash, raw CR
    b"2\t\\N\t\\N\t\x00\t\\N\n"
)


class _Trickle(io.RawIOBase):
    """``DUMP`` a few bytes per read (escapes split across blocks)."""

    def __init__(self, step: int) -> None:
        self._data, self._at, self._step = DUMP, 0, step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        out = self._data[self._at : self._at + self._step]
        self._at += len(out)
        return out


@pytest.mark.parametrize("step", [1, 2, 3, 5, 64])
def test_dump_stream_keeps_escapes_apart_from_field_and_line_ends(step: int) -> None:
    out = DumpStream(_Trickle(step), "\t").read()  # type: ignore[arg-type]
    assert out.count(b"\n") == 2 and [line.count(b"\t") for line in out.split(b"\n")[:2]] == [4, 4]


def test_headerless_dump_reads_as_mysql_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_bytes(DUMP)
    schema = pa.schema([("id", pa.int64()), ("s", pa.string()), ("b", pa.binary()), ("bit", pa.bool_()),
                        ("t", pa.string())])  # fmt: skip
    f = input_file(path, tuple(schema.names))
    rows = [r for batch in read_batches(f, schema) for r in batch.data.to_pylist()]
    assert rows == [
        {"id": 1, "s": 'say "hi\ttab"', "b": b"\x00\t\\\xfe", "bit": True, "t": "a\nb\rc"},
        {"id": 2, "s": None, "b": None, "bit": False, "t": None},
    ]
    path.write_bytes(b"3\tx\t\\N\t\x07\t\\N\n")
    with pytest.raises(DataError, match=r"d.tsv line 1, column bit: cannot read b'\\x07' as a bit"):
        list(read_batches(input_file(path, tuple(schema.names)), schema))


def test_headerless_dump_empty_field_is_the_empty_string(tmp_path: Path) -> None:
    """MySQL writes NULL as \\N: in a dump an empty field is '' (Qserv's case03 queries
    ``stringValue = ''``), where a CSV with a header reads it as NULL."""
    schema = pa.schema([("id", pa.int64()), ("s", pa.string())])
    dump = tmp_path / "e.tsv"
    dump.write_bytes(b"1\t\n2\t\\N\n")
    rows = [
        r for b in read_batches(input_file(dump, tuple(schema.names)), schema) for r in b.data.to_pylist()
    ]
    assert rows == [{"id": 1, "s": ""}, {"id": 2, "s": None}]
    headed = tmp_path / "h.tsv"
    headed.write_bytes(b"id\ts\n1\t\n")
    assert [r for b in read_batches(input_file(headed), schema) for r in b.data.to_pylist()] == [
        {"id": 1, "s": None}
    ]


def test_headerless_dump_with_enclosed_fields(tmp_path: Path) -> None:
    """MySQL's FIELDS ENCLOSED BY '"' (Qserv's case04 DeepCoadd): a delimiter inside quotes is
    data, an escaped or doubled quote is a quote, \\N unquoted is NULL."""
    schema = pa.schema([("id", pa.int64()), ("patch", pa.string()), ("x", pa.float64()), ("s", pa.string())])
    dump = tmp_path / "q.csv"
    dump.write_bytes(b'"1","406,11","0.5","say \\"hi\\""\n"2","1,2",\\N,"a ""b"""\n"3","",1.5,\\N\n')
    f = input_file(dump, tuple(schema.names), '"')
    rows = [r for b in read_batches(f, schema) for r in b.data.to_pylist()]
    assert rows == [
        {"id": 1, "patch": "406,11", "x": 0.5, "s": 'say "hi"'},
        {"id": 2, "patch": "1,2", "x": None, "s": 'a "b"'},
        {"id": 3, "patch": "", "x": 1.5, "s": None},
    ]


def test_enclosed_by_needs_a_headerless_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="--enclosed-by takes one character"):
        LoadSpec(
            url="",
            database="d",
            table="t",
            kind=TableKind.REGULAR,
            files=(tmp_path / "x.csv",),
            enclosed_by='"',
        )
