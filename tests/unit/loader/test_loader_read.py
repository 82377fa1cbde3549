"""Load specification, schema parsing and inference, file errors (no network)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loader.cli import add_arguments, spec_from_args
from loader.read import infer_schema, input_file, read_batches, unify_schemas
from loader.spec import LoadSpec, columns_of, fingerprint, parse_schema
from qserv.catalog import Column, TableKind
from qserv.errors import DataError, InvalidParameter, SyntaxError_


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qserv load")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_director_spec_from_args(tmp_path: Path) -> None:
    args = parse(["--database", "sky", "--table", "Object", "--director", "--id", "objectId",
                  "--lon", "ra", "--lat", "dec", "a.csv", "b.csv"])  # fmt: skip
    spec = spec_from_args(args)
    assert spec.kind is TableKind.DIRECTOR
    assert spec.required_columns == ("objectId", "ra", "dec")
    assert spec.files == (Path("a.csv"), Path("b.csv"))
    assert spec.url == "http://127.0.0.1:4048"


def test_child_and_regular_spec_from_args() -> None:
    child = spec_from_args(parse(["--database", "sky", "--table", "Source", "--child-of", "Object",
                                  "--key", "objectId", "s.csv"]))  # fmt: skip
    assert (child.kind, child.director, child.key_column) == (TableKind.CHILD, "Object", "objectId")
    regular = spec_from_args(parse(["--database", "sky", "--table", "Filter", "--regular", "f.tsv"]))
    assert regular.kind is TableKind.REGULAR and regular.required_columns == ()


def test_kind_options_are_exclusive_and_required() -> None:
    with pytest.raises(SystemExit):
        parse(["--database", "d", "--table", "t", "--regular", "--director", "f.csv"])
    with pytest.raises(SystemExit):
        parse(["--database", "d", "--table", "t", "f.csv"])


def test_director_without_position_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="needs --id, --lon and --lat"):
        spec_from_args(parse(["--database", "d", "--table", "t", "--director", "--id", "x", "f.csv"]))


def test_parse_schema_normalises_types() -> None:
    columns, schema = parse_schema("CREATE TABLE sky.Object (objectId BIGINT, ra DOUBLE, name TEXT, f REAL)")
    assert columns == (Column("objectId", "BIGINT"), Column("ra", "DOUBLE"), Column("name", "VARCHAR"),
                       Column("f", "FLOAT"))  # fmt: skip
    assert schema.field("objectId").type == pa.int64()
    assert schema.field("name").type == pa.string()


def test_parse_schema_errors() -> None:
    with pytest.raises(SyntaxError_, match="expected CREATE TABLE"):
        parse_schema("SELECT 1")
    with pytest.raises(SyntaxError_):
        parse_schema("CREATE TABLE t (a NOSUCHTYPE)")


def test_delimiter_from_extension_and_sniffed(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text("x\ty\n1\t2\n")
    (tmp_path / "b.txt").write_text("x|y\n1|2\n")
    assert input_file(tmp_path / "a.tsv").delimiter == "\t"
    assert input_file(tmp_path / "b.txt").delimiter == "|"
    with pytest.raises(DataError, match="does not exist"):
        input_file(tmp_path / "missing.csv")


def test_inference_reads_the_whole_file(tmp_path: Path) -> None:
    # the first block says integer; a later row holds a float: the column must be DOUBLE
    lines = ["id,flux,label,empty"] + [f"{i},{i},a," for i in range(50_000)] + ["50000,1.5,b,"]
    path = tmp_path / "late_float.csv"
    path.write_text("\n".join(lines) + "\n")
    f = input_file(path)
    schema = infer_schema(f, block_bytes=64 << 10)
    assert schema.field("id").type == pa.int64()
    assert schema.field("flux").type == pa.float64()
    assert schema.field("empty").type == pa.string()
    rows = sum(b.data.num_rows for b in read_batches(f, schema, block_bytes=64 << 10))
    assert rows == 50_001


def test_unify_widens_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,v\n1,2\n")
    (tmp_path / "b.csv").write_text("id,v\n1,2.5\n")
    files = [input_file(tmp_path / n) for n in ("a.csv", "b.csv")]
    schema = unify_schemas([(f, infer_schema(f)) for f in files])
    assert schema.field("v").type == pa.float64()
    assert columns_of(schema) == (Column("id", "BIGINT"), Column("v", "DOUBLE"))


def test_bad_value_names_file_line_and_column(tmp_path: Path) -> None:
    lines = ["id,ra"] + [f"{i},{i / 10}" for i in range(20_000)] + ["20000,abc"]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    _, schema = parse_schema("CREATE TABLE t (id BIGINT, ra DOUBLE)")
    with pytest.raises(DataError, match=r"bad.csv line 20002, column ra: cannot read 'abc' as double"):
        for _ in read_batches(input_file(path), schema, block_bytes=32 << 10):
            pass


def test_missing_and_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("id,other\n1,2\n")
    _, schema = parse_schema("CREATE TABLE t (id BIGINT, ra DOUBLE)")
    with pytest.raises(DataError, match="lacks column"):
        list(read_batches(input_file(path), schema))


def test_parquet_schema_and_case_insensitive_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"ObjectId": [1, 2, 3], "RA": [1.0, 2.0, 3.0]}), path)
    f = input_file(path)
    assert f.format == "parquet"
    _, schema = parse_schema("CREATE TABLE t (objectid BIGINT, ra DOUBLE)")
    batches = list(read_batches(f, schema, batch_rows=2))
    assert [b.first_row for b in batches] == [0, 2]
    assert batches[0].data.schema.names == ["objectid", "ra"]


def test_fingerprint_depends_on_content(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("x\n1\n")
    spec = LoadSpec("http://h:1", "d", "t", TableKind.REGULAR, (path,))
    a = fingerprint(spec, {path: "h1"})
    assert a == fingerprint(spec, {path: "h1"})
    assert a != fingerprint(spec, {path: "h2"})
    assert a != fingerprint(LoadSpec("http://h:1", "d", "u", TableKind.REGULAR, (path,)), {path: "h1"})
