"""One of Qserv's integration cases read from its directory: tables, how to load them, queries.

A case directory (``data/caseNN`` of the public lsst/qserv repository, read in place, never
copied into this repository) holds ``data/ingest/*.json`` (one per table: partitioned or not,
director, keys, position columns, the MySQL column types), ``data/schema/*.schema`` (the MySQL
DDL the reference database uses), the data files (``.tsv.gz``/``.csv.gz``, no header, ``\\N``
for NULL) and ``queries/*.sql``. A query file holds one statement written twice: lines ending
in ``-- noQserv`` are for the plain database only, lines starting with ``-- withQserv`` are
for Qserv only (usually the ``qserv_areaspec_*`` form of a ``BETWEEN`` restriction);
``-- pragma sortresult`` means the rows are compared as a set.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

# Qserv's partitioner adds these to every partitioned table; our loader computes its own
PARTITION_COLUMNS = {"chunkid", "subchunkid"}


@dataclass(frozen=True)
class CaseTable:
    """One table of a case and the ``qserv load`` kind options that describe it."""

    name: str
    kind: str  # director | child | match | regular
    kind_args: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (name, MySQL type) as the data files hold them
    data: Path | None  # None: the data file is absent from the repository
    delimiter: str
    mysql_schema: Path | None
    enclosed_by: str | None = None  # the ingest config's fields_enclosed_by

    def create_table(self) -> str:
        """A ``CREATE TABLE`` with the case's MySQL column types, for ``qserv load --schema``."""
        cols = ",\n  ".join(f"`{n}` {t}" for n, t in self.columns)
        return f"CREATE TABLE `{self.name}` (\n  {cols}\n)"


@dataclass(frozen=True)
class CaseQuery:
    name: str
    qserv_sql: str  # as sent to Qserv (withQserv lines in, noQserv lines out)
    mysql_sql: str  # as sent to the plain database
    sort: bool  # compare as a set of rows

    def tables(self) -> set[str]:
        return {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", self.qserv_sql)}


@dataclass(frozen=True)
class Case:
    name: str
    database: str
    overlap: float
    tables: tuple[CaseTable, ...]
    queries: tuple[CaseQuery, ...]


def _kind(spec: dict[str, object]) -> tuple[str, tuple[str, ...]]:
    if not spec.get("is_partitioned"):
        return "regular", ("--regular",)
    lon, lat = str(spec.get("longitude_key") or ""), str(spec.get("latitude_key") or "")
    position = ("--lon", lon, "--lat", lat) if lon and lat else ()
    if spec.get("director_table2"):
        args = [
            "--match",
            "--left",
            f"{spec['director_table']}={spec['director_key']}",
            "--right",
            f"{spec['director_table2']}={spec['director_key2']}",
        ]
        if spec.get("flag"):
            args += ["--flag", str(spec["flag"])]
        return "match", tuple(args)
    if spec.get("director_table"):
        return "child", (
            "--child-of",
            str(spec["director_table"]),
            "--key",
            str(spec["director_key"]),
            *position,
        )
    args = ["--director", "--id", str(spec["director_key"]), *position]
    if str(spec.get("unique_primary_key", 1)) == "0":
        args.append("--non-unique-key")
    return "director", tuple(args)


def _data_file(data_dir: Path, table: str) -> tuple[Path | None, str]:
    for ext, delimiter in ((".tsv", "\t"), (".csv", ","), (".txt", "\t")):
        for suffix in ("", ".gz"):
            path = data_dir / f"{table}{ext}{suffix}"
            if path.exists():
                return path, delimiter
    return None, "\t"


def _delimiter(case_dir: Path, default: str) -> str:
    common = case_dir / "data" / "partition" / "common.json"
    if common.exists():
        spec = json.loads(common.read_text())
        return str(spec.get("in", {}).get("csv", {}).get("delimiter", default))
    return default


def split_query(text: str) -> tuple[str, str, bool]:
    """(Qserv text, plain-database text, sort rows) of one query file."""
    qserv, mysql, sort = [], [], False
    for line in text.splitlines():
        stripped = line.strip()
        lower = stripped.lower()
        if lower.startswith("-- pragma"):
            sort = sort or "sortresult" in lower
            continue
        if lower.startswith("-- withqserv"):
            qserv.append(stripped[len("-- withQserv") :])
            continue
        if re.search(r"--\s*noqserv\s*$", lower):
            mysql.append(re.sub(r"--\s*noQserv\s*$", "", line, flags=re.IGNORECASE))
            continue
        if stripped.startswith("--"):
            continue
        qserv.append(line)
        mysql.append(line)

    def clean(lines: list[str]) -> str:
        return "\n".join(lines).strip().rstrip(";").strip()

    return clean(qserv), clean(mysql), sort


def render(sql: str, database: str) -> str:
    """``sql`` with Qserv's ``{DBTAG_A}`` tag replaced by ``database.`` (as Qserv's runner does)."""
    return sql.replace("{DBTAG_A}", f"{database}.")


def read_case(case_dir: Path) -> Case:
    """The case in ``case_dir`` (a ``data/caseNN`` directory)."""
    ingest = case_dir / "data" / "ingest"
    database = json.loads((ingest / "database.json").read_text())
    tables = []
    for path in sorted(ingest.glob("*.json")):
        if path.name in {"database.json", "metadata.json"}:
            continue
        spec = json.loads(path.read_text())
        name = str(spec["table"])
        data, delimiter = _data_file(case_dir / "data", name)
        delimiter = str(spec.get("fields_terminated_by") or _delimiter(case_dir, delimiter))
        enclosed = str(spec["fields_enclosed_by"]) if spec.get("fields_enclosed_by") else None
        columns = tuple((str(c["name"]), str(c["type"]).strip()) for c in spec["schema"])
        if data is not None and spec.get("is_partitioned"):
            columns = _data_columns(columns, data, delimiter)
        kind, kind_args = _kind(spec)
        schema = case_dir / "data" / "schema" / f"{name}.schema"
        tables.append(
            CaseTable(
                name, kind, kind_args, columns, data, delimiter, schema if schema.exists() else None, enclosed
            )
        )
    queries = []
    for path in sorted((case_dir / "queries").glob("*.sql")):
        qserv, mysql, sort = split_query(path.read_text(errors="replace"))
        if qserv:
            db = str(database["database"])
            queries.append(CaseQuery(path.stem, render(qserv, db), render(mysql, db), sort))
    order = {"director": 0, "child": 1, "match": 2, "regular": 3}
    return Case(
        name=case_dir.name,
        database=str(database["database"]),
        overlap=float(database.get("overlap", 1 / 60)),
        tables=tuple(sorted(tables, key=lambda t: (order[t.kind], t.name))),
        queries=tuple(queries),
    )


def _data_columns(
    columns: tuple[tuple[str, str], ...], data: Path, delimiter: str
) -> tuple[tuple[str, str], ...]:
    """The columns the data file holds: Qserv's partition columns only when the file has them."""
    import gzip

    opener = gzip.open if data.suffix == ".gz" else open
    with opener(data, "rt", errors="replace") as f:  # type: ignore[operator]
        first = f.readline().rstrip("\n")
    width = len(first.split(delimiter)) if first else len(columns)
    if width == len(columns):
        return columns
    return tuple(c for c in columns if c[0].lower() not in PARTITION_COLUMNS)
