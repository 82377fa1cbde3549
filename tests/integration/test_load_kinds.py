"""Loader kinds of Qserv's catalogs through a real cluster, ``qserv load`` and psycopg.

Children without a director row (kept in the chunk of their own position), directors with
non-unique keys, match tables (each pair once when read alone), every column type, and the
refusals. Chunks in the checks come from healpy, computed here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import healpy as hp
import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qserv.metadata.store import WorkerState, open_store
from tests.cluster import LiveCluster, running_cluster, wait_until

ORDER = 5
NSIDE = 1 << ORDER
OVERLAP = 1.0 / 60.0


def chunk(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.asarray(hp.ang2pix(NSIDE, ra, dec, nest=True, lonlat=True))


def write_csv(path: Path, header: list[str], rows: list[tuple[object, ...]], sep: str = ",") -> Path:
    lines = [sep.join(header)] + [sep.join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def tc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    with running_cluster(tmp_path_factory.mktemp("kinds"), workers=2, replicas=1, objects=0) as tc:
        yield tc


def query(tc: LiveCluster, sql: str, db: str = "kinds") -> list[tuple[object, ...]]:
    with psycopg.connect(tc.dsn.replace("dbname=sky", f"dbname={db}"), autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def load_ok(tc: LiveCluster, *args: str) -> None:
    done = tc.load(*args, check=False)
    assert done.returncode == 0, done.stderr


def load_error(tc: LiveCluster, *args: str) -> str:
    done = tc.load(*args, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def objects(tc: LiveCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Director Obj: 400 objects over a patch of many chunks."""
    rng = np.random.default_rng(11)
    n = 400
    ra = rng.uniform(40.0, 50.0, n)
    dec = rng.uniform(-5.0, 5.0, n)
    ids = np.arange(1, n + 1)
    path = write_csv(tmp_path_factory.mktemp("obj") / "Obj.csv", ["objectId", "ra", "decl"],
                     [(int(i), repr(float(a)), repr(float(d))) for i, a, d in zip(ids, ra, dec, strict=True)])  # fmt: skip
    load_ok(tc, "--database", "kinds", "--table", "Obj", "--director", "--id", "objectId", "--lon", "ra",
            "--lat", "decl", str(path))  # fmt: skip
    return {"id": ids, "ra": ra, "dec": dec}


def test_children_without_director_rows(
    tc: LiveCluster, objects: dict[str, np.ndarray], tmp_path: Path
) -> None:
    rng = np.random.default_rng(12)
    rows = []
    # two sources per object, within 0.01 deg of it (some across a chunk edge), and orphans
    for k in range(2):
        off_ra = rng.uniform(-0.007, 0.007, objects["id"].size)
        off_dec = rng.uniform(-0.007, 0.007, objects["id"].size)
        for i, (oid, a, d) in enumerate(zip(objects["id"], objects["ra"], objects["dec"], strict=True)):
            rows.append((int(oid) * 10 + k, int(oid), float(a + off_ra[i]), float(d + off_dec[i])))
    orphan_ra, orphan_dec = rng.uniform(40.0, 50.0, 60), rng.uniform(-5.0, 5.0, 60)
    for j in range(60):
        rows.append((100_000 + j, 50_000 + j, float(orphan_ra[j]), float(orphan_dec[j])))
    rows.append((200_000, None, 45.5, 0.5))  # no key at all: placed by its position too
    src = np.array([(r[2], r[3]) for r in rows])
    director_chunk = dict(
        zip(objects["id"].tolist(), chunk(objects["ra"], objects["dec"]).tolist(), strict=True)
    )
    own = chunk(src[:, 0], src[:, 1])
    across = sum(
        1 for r, c in zip(rows, own, strict=True) if r[1] in director_chunk and director_chunk[r[1]] != c
    )
    assert across > 0  # children whose own position is in another chunk than their director's
    path = write_csv(tmp_path / "Src.csv", ["srcId", "objectId", "ra", "decl"], rows)

    # without --lon/--lat the orphans are refused, as before
    keyed = write_csv(tmp_path / "Keyed.csv", ["srcId", "objectId", "ra", "decl"], rows[:-1])
    err = load_error(tc, "--database", "kinds", "--table", "SrcNoPos", "--child-of", "Obj", "--key", "objectId",
                     str(keyed))  # fmt: skip
    assert f"column objectId: no Obj row has key {50_000}" in err

    load_ok(tc, "--database", "kinds", "--table", "Src", "--child-of", "Obj", "--key", "objectId", "--lon", "ra",
            "--lat", "decl", str(path))  # fmt: skip
    assert query(tc, "SELECT COUNT(*) FROM Src") == [(len(rows),)]
    assert query(tc, "SELECT srcId, ra FROM Src WHERE objectId = 50007") == [(100_007, rows[-54][2])]
    assert query(tc, "SELECT srcId FROM Src WHERE objectId IS NULL") == [(200_000,)]
    got = query(tc, "SELECT srcId FROM Src WHERE objectId IN (50001, 3, 50059) ORDER BY srcId")
    assert got == [(30,), (31,), (100_001,), (100_059,)]
    # a plain spatial filter on the child finds every row, whatever chunk it is in
    inside = sorted(r[0] for r in rows if 44.0 <= r[2] <= 46.0 and -1.0 <= r[3] <= 1.0)
    got = query(tc, "SELECT srcId FROM Src WHERE ra BETWEEN 44 AND 46 AND decl BETWEEN -1 AND 1 ORDER BY 1")
    assert [g[0] for g in got] == inside
    # a director row loaded after a child row that had none would not join it: refused
    late = write_csv(
        tmp_path / "Late.csv", ["objectId", "ra", "decl"], [(900_001, 45.0, 0.0), (50_003, 45.0, 0.0)]
    )
    err = load_error(tc, "--database", "kinds", "--table", "Obj", "--director", "--id", "objectId", "--lon", "ra",
                     "--lat", "decl", str(late))  # fmt: skip
    assert (
        "director key 50003 of kinds.obj has rows in child table kinds.Src loaded without a director row "
        "(they are in the chunks of their own positions)" in err
    )
    assert query(tc, "SELECT COUNT(*) FROM Obj WHERE objectId IN (900001, 50003)") == [(0,)]

    # the join keeps the children of existing director rows only
    assert query(tc, "SELECT COUNT(*) FROM Obj o JOIN Src s ON o.objectId = s.objectId") == [
        (len(rows) - 61,)
    ]


def _rounded(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in rows]


def _distance_to_pixel(ra: float, dec: float, pix: int) -> float:
    """Angular distance (deg) from a point to a pixel's boundary, from healpy's boundary points."""
    boundary = hp.boundaries(NSIDE, pix, step=2000, nest=True)
    point = hp.ang2vec(ra, dec, lonlat=True)
    return float(np.degrees(np.arccos(np.clip(point @ boundary, -1.0, 1.0)).min()))


def test_child_too_far_from_its_director_is_refused(
    tc: LiveCluster, objects: dict[str, np.ndarray], tmp_path: Path
) -> None:
    oid = int(objects["id"][5])
    ra, dec = float(objects["ra"][5]) + 2.5, float(objects["dec"][5])  # two chunks away
    path = write_csv(tmp_path / "Far.csv", ["srcId", "objectId", "ra", "decl"],
                     [(1, int(objects["id"][0]), float(objects["ra"][0]), float(objects["dec"][0])),
                      (2, oid, ra, dec)])  # fmt: skip
    err = load_error(tc, "--database", "kinds", "--table", "Far", "--child-of", "Obj", "--key", "objectId",
                     "--lon", "ra", "--lat", "decl", str(path))  # fmt: skip
    pix = int(chunk(objects["ra"][5:6], objects["dec"][5:6])[0])
    m = re.search(
        rf"{re.escape(str(path))} line 3: child row with key {oid} lies ([0-9.]+)° from chunk {pix} of its "
        rf"Obj row, farther than the overlap {OVERLAP:.6f}°",
        err,
    )
    assert m is not None, err
    assert abs(float(m.group(1)) - _distance_to_pixel(ra, dec, pix)) < 1e-3
    assert query(tc, "SELECT COUNT(*) FROM Far") == [(0,)]  # created, nothing loaded


def test_non_unique_director_keys(tc: LiveCluster, tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    files, rows = [], []
    for f in range(2):  # the same keys in both files (two loads), each key in several chunks
        ra, dec = rng.uniform(40.0, 50.0, 150), rng.uniform(-5.0, 5.0, 150)
        part = [
            (int(i % 50), f * 1000 + i, float(a), float(d))
            for i, (a, d) in enumerate(zip(ra, dec, strict=True))
        ]
        rows += part
        files.append(write_csv(tmp_path / f"Dup{f}.csv", ["id", "n", "ra", "decl"], part))
    err = load_error(tc, "--database", "kinds", "--table", "Uniq", "--director", "--id", "id", "--lon", "ra",
                     "--lat", "decl", str(files[0]))  # fmt: skip
    assert "duplicate director key" in err
    for f in files:
        load_ok(tc, "--database", "kinds", "--table", "Dup", "--director", "--non-unique-key", "--id", "id",
                "--lon", "ra", "--lat", "decl", str(f))  # fmt: skip
    chunks_of_7 = {int(c) for r, c in zip(rows, chunk(np.array([r[2] for r in rows]), np.array([r[3] for r in rows])), strict=True) if r[0] == 7}  # fmt: skip
    assert len(chunks_of_7) > 1
    assert query(tc, "SELECT COUNT(*) FROM Dup") == [(300,)]
    assert query(tc, "SELECT n FROM Dup WHERE id = 7 ORDER BY n") == [
        (r[1],) for r in sorted(rows, key=lambda r: r[1]) if r[0] == 7
    ]
    ref = duckdb.connect()
    ref.execute(f"CREATE TABLE Dup AS SELECT * FROM read_csv(['{files[0]}', '{files[1]}'], header = true)")
    for sql in (
        "SELECT id, n, ra FROM Dup WHERE id = 13",
        "SELECT id, COUNT(*), SUM(n) FROM Dup WHERE id IN (1, 2, 3, 48) GROUP BY id",
        "SELECT COUNT(*) FROM Dup WHERE id = 999",
    ):
        assert Counter(query(tc, sql)) == Counter(ref.execute(sql).fetchall()), sql
    got = query(tc, "SELECT id, COUNT(*) FROM Dup WHERE id IN (7, 8, 49, 77) GROUP BY id ORDER BY id")
    want = Counter(r[0] for r in rows if r[0] in (7, 8, 49, 77))
    assert got == sorted(want.items())
    # a child row's key would not name one director row
    child = write_csv(tmp_path / "DupChild.csv", ["cid", "id"], [(1, 7)])
    err = load_error(
        tc, "--database", "kinds", "--table", "DupChild", "--child-of", "Dup", "--key", "id", str(child)
    )
    assert (
        "child table kinds.DupChild: director table kinds.Dup has non-unique keys (--non-unique-key), "
        "so a child row's key does not name one director row" in err
    )


@pytest.fixture(scope="module")
def refs(
    tc: LiveCluster, objects: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, np.ndarray]:
    """Director Ref: 150 reference objects in the same patch."""
    rng = np.random.default_rng(14)
    n = 150
    ra, dec = rng.uniform(40.0, 50.0, n), rng.uniform(-5.0, 5.0, n)
    ids = np.arange(1001, 1001 + n)
    path = write_csv(tmp_path_factory.mktemp("ref") / "Ref.csv", ["refId", "ra", "decl"],
                     [(int(i), float(a), float(d)) for i, a, d in zip(ids, ra, dec, strict=True)])  # fmt: skip
    load_ok(tc, "--database", "kinds", "--table", "Ref", "--director", "--id", "refId", "--lon", "ra", "--lat", "decl",
            str(path))  # fmt: skip
    return {"id": ids, "ra": ra, "dec": dec}


def test_match_table_alone_returns_each_pair_once(
    tc: LiveCluster, objects: dict[str, np.ndarray], refs: dict[str, np.ndarray], tmp_path: Path
) -> None:
    rng = np.random.default_rng(15)
    pairs: list[tuple[object, ...]] = []
    for r in refs["id"].tolist():  # N-to-M: each ref matches 1-3 objects, objects match several refs
        for o in rng.choice(objects["id"], size=int(rng.integers(1, 4)), replace=False).tolist():
            pairs.append((r, o, round(float(rng.uniform(0, 1)), 6), 0))
    pairs += [(99_001, 3, 0.5, 0), (1001, 88_888, 0.25, 0), (None, 4, 0.125, 0), (1002, None, 0.0625, 0)]
    ref_chunk = dict(zip(refs["id"].tolist(), chunk(refs["ra"], refs["dec"]).tolist(), strict=True))
    obj_chunk = dict(zip(objects["id"].tolist(), chunk(objects["ra"], objects["dec"]).tolist(), strict=True))
    apart = [
        p for p in pairs if p[0] in ref_chunk and p[1] in obj_chunk and ref_chunk[p[0]] != obj_chunk[p[1]]
    ]
    together = [
        p for p in pairs if p[0] in ref_chunk and p[1] in obj_chunk and ref_chunk[p[0]] == obj_chunk[p[1]]
    ]
    assert len(apart) > 100 and Counter(p[1] for p in pairs).most_common(1)[0][1] > 1
    path = write_csv(tmp_path / "M.csv", ["refId", "objectId", "dist", "flags"], pairs)
    load_ok(tc, "--database", "kinds", "--table", "M", "--match", "--left", "Ref=refId", "--right", "Obj=objectId",
            "--flag", "flags", str(path))  # fmt: skip
    assert query(tc, "SELECT COUNT(*) FROM M") == [(len(pairs),)]
    got = query(tc, "SELECT refId, objectId, dist FROM M")
    assert Counter(got) == Counter(p[:3] for p in pairs)
    assert sorted(query(tc, "SELECT objectId FROM M WHERE refId = 1001")) == sorted(
        (p[1],) for p in pairs if p[0] == 1001
    )
    # the flag as Qserv's partitioner sets it on the copy kept: 1 or 3, or 4 + the present side
    flags = Counter(f for (f,) in query(tc, "SELECT flags FROM M"))
    assert flags == Counter({1: len(apart), 3: len(together), 1 + 4: 2, 2 + 4: 2})
    assert query(tc, "SELECT COUNT(*), SUM(dist) FROM M WHERE dist > 0.3")[0][0] == sum(
        1 for p in pairs if p[2] > 0.3
    )

    # a hidden flag when --flag is not given: SELECT * shows the user's columns only
    load_ok(tc, "--database", "kinds", "--table", "M2", "--match", "--left", "Ref=refId", "--right", "Obj=objectId",
            str(path))  # fmt: skip
    got = query(tc, "SELECT * FROM M2")
    assert Counter(got) == Counter(pairs)

    # against one DuckDB holding the input rows, running the query as written
    ref = duckdb.connect()
    ref.execute(f"CREATE TABLE M2 AS SELECT * FROM read_csv('{path}', header = true)")
    for sql in (
        "SELECT COUNT(*), COUNT(refId), COUNT(objectId) FROM M2",
        "SELECT objectId, COUNT(*) AS n, MIN(dist), MAX(refId) FROM M2 GROUP BY objectId HAVING COUNT(*) > 1",
        "SELECT refId, objectId FROM M2 WHERE objectId IN (3, 4, 5) OR refId IS NULL OR objectId IS NULL",
        "SELECT * FROM M2 ORDER BY dist DESC, refId LIMIT 7",
        "SELECT SUM(dist), AVG(dist) FROM M2 WHERE refId BETWEEN 1010 AND 1100",
    ):
        want = ref.execute(sql).fetchall()
        got = query(tc, sql)
        assert Counter(_rounded(got)) == Counter(_rounded(want)), sql


def test_match_refusals(
    tc: LiveCluster, objects: dict[str, np.ndarray], refs: dict[str, np.ndarray], tmp_path: Path
) -> None:
    good = write_csv(tmp_path / "ok.csv", ["refId", "objectId", "name"], [(1001, 1, "a")])
    neither = write_csv(
        tmp_path / "neither.csv", ["refId", "objectId", "name"], [(1001, 1, "a"), (77_777, 66_666, "b")]
    )
    base = ["--database", "kinds", "--match", "--right", "Obj=objectId"]
    err = load_error(tc, *base, "--table", "MN", "--left", "Ref=refId", str(neither))
    assert (
        f"{neither} line 3: match row has neither side: no kinds.Ref row has key 77777 and no kinds.Obj row "
        "has key 66666" in err
    )
    err = load_error(tc, *base, "--table", "MU", "--left", "Nope=refId", str(good))
    assert "match table kinds.MU: --left director table kinds.Nope does not exist" in err
    err = load_error(tc, *base, "--table", "MF", "--left", "Ref=refId", "--flag", "nope", str(good))
    assert "--flag column 'nope' is not a column of the input" in err
    err = load_error(tc, *base, "--table", "MF", "--left", "Ref=refId", "--flag", "name", str(good))
    assert "match table kinds.MF: --flag column name must be an integer column, not VARCHAR" in err
    err = load_error(tc, *base, "--table", "MF", "--left", "Ref", str(good))
    assert "--left 'Ref': expected DIRECTOR=COLUMN" in err
    # a director of another family
    subprocess.run([sys.executable, "-m", "qserv.cli", "database", "create", "other", "--overlap", "0.05", "--url",
                    tc.url], check=True, capture_output=True)  # fmt: skip
    far = write_csv(tmp_path / "far.csv", ["fid", "ra", "decl"], [(1, 45.0, 0.0)])
    load_ok(
        tc,
        "--database",
        "other",
        "--table",
        "F",
        "--director",
        "--id",
        "fid",
        "--lon",
        "ra",
        "--lat",
        "decl",
        str(far),
    )
    err = load_error(tc, *base, "--table", "MX", "--left", "other.F=refId", str(good))
    assert (
        "match table kinds.MX: --left director other.F is in family healpix-o5-s8-ov0.050000, the match table in "
        "family healpix-o5-s8-ov0.016667" in err
    )
    # a director of another database of the family is a match side
    load_ok(tc, "--database", "kinds2", "--table", "G", "--director", "--id", "fid", "--lon", "ra", "--lat", "decl",
            str(far))  # fmt: skip
    cross = write_csv(tmp_path / "cross.csv", ["gid", "objectId"], [(1, 1), (1, 2), (5, 3)])
    load_ok(tc, *base, "--table", "MC", "--left", "kinds2.G=gid", str(cross))
    assert sorted(query(tc, "SELECT gid, objectId FROM MC")) == [(1, 1), (1, 2), (5, 3)]
    # a match table joined with a director
    load_ok(tc, "--database", "kinds", "--table", "MJ", "--match", "--left", "Ref=refId", "--right", "Obj=objectId",
            str(good))  # fmt: skip
    assert query(tc, "SELECT m.refId, o.objectId FROM MJ m JOIN Obj o ON m.objectId = o.objectId") == [
        (1001, 1)
    ]
    # Ref 1001 and Obj 1 lie degrees apart, in chunks where the other director has no row (nor
    # overlap row): joined to both directors the pair is not found chunk-locally, but fetched from
    # both chunks and joined at the czar (czar/plan/match.py), once
    assert query(
        tc,
        "SELECT r.refId, o.objectId FROM Ref r JOIN MJ m ON m.refId = r.refId JOIN Obj o ON o.objectId = m.objectId",
    ) == [(1001, 1)]


TYPES_SQL = """CREATE TABLE `Typed` (
  `id` bigint(20) NOT NULL, `ra` double NOT NULL, `decl` double NOT NULL,
  `b1` tinyint(1) DEFAULT NULL, `bit1` bit(1) DEFAULT NULL, `flag` boolean,
  `i8` tinyint(4), `u8` tinyint unsigned, `i16` smallint(6), `u16` smallint unsigned,
  `i32` int(11), `u32` int(10) unsigned, `i64` bigint(20), `u64` bigint(20) unsigned,
  `f32` float, `f64` double, `c` char(4), `vc` varchar(20), `t` text,
  `bl` blob, `vb` varbinary(16), `ts` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP, `dt` datetime, `d` date,
  PRIMARY KEY (`id`)
) ENGINE=MyISAM DEFAULT CHARSET=latin1;
"""


def test_column_types_round_trip(tc: LiveCluster, tmp_path: Path) -> None:
    import datetime as dt

    schema = tmp_path / "Typed.sql"
    schema.write_text(TYPES_SQL)
    blob = b"\x00\x01\t\n\\\r\x1a\xffab"
    escaped = "\\0\x01\\t\\n\\\\\\r\\Z\xffab"  # as MySQL's INTO OUTFILE writes the bytes
    line1 = ["1", "45.0", "0.5", "1", "1", "true", "-128", "255", "-32768", "65535", "-2147483648",
             "4294967295", "-9223372036854775808", "18446744073709551615", "1.5", "2.25", "abcd", "héllo",
             "long text", escaped, "\\0\\0x", "2010-01-02 03:04:05", "1998-06-20 15:59:33", "2001-02-03"]  # fmt: skip
    line2 = ["2", "45.5", "-0.5"] + ["\\N"] * 18 + ["2011-01-01 00:00:00", "\\N", "\\N"]
    data = "\t".join(["id", "ra", "decl", "b1", "bit1", "flag", "i8", "u8", "i16", "u16", "i32", "u32", "i64",
                      "u64", "f32", "f64", "c", "vc", "t", "bl", "vb", "ts", "dt", "d"]) + "\n"  # fmt: skip
    data += "\t".join(line1) + "\n" + "\t".join(line2) + "\n"
    tsv = tmp_path / "Typed.tsv"
    # text as UTF-8, the blob's raw bytes as they are (0xff is no UTF-8)
    tsv.write_bytes(data.encode("utf-8").replace("\xff".encode(), b"\xff"))
    load_ok(tc, "--database", "kinds", "--table", "Typed", "--director", "--id", "id", "--lon", "ra", "--lat", "decl",
            "--schema", str(schema), str(tsv))  # fmt: skip
    want1 = (1, 45.0, 0.5, 1, True, True, -128, 255, -32768, 65535, -2147483648, 4294967295, -9223372036854775808,
             18446744073709551615, 1.5, 2.25, "abcd", "héllo", "long text", blob, b"\x00\x00x",
             dt.datetime(2010, 1, 2, 3, 4, 5), dt.datetime(1998, 6, 20, 15, 59, 33), dt.date(2001, 2, 3))  # fmt: skip
    want2 = (2, 45.5, -0.5) + (None,) * 18 + (dt.datetime(2011, 1, 1), None, None)
    got = query(tc, "SELECT * FROM Typed ORDER BY id")
    assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in got] == [want1, want2]
    with psycopg.connect(tc.dsn.replace("dbname=sky", "dbname=kinds"), autocommit=True) as conn:
        cur = conn.execute("SELECT bl, ts, flag, u64 FROM Typed WHERE id = 1")
        oids = [d.type_code for d in cur.description]
    assert oids[:3] == [17, 1114, 16]  # bytea, timestamp, bool

    # the same types from Parquet
    table = pa.table(
        {
            "id": pa.array([3], pa.int64()), "ra": pa.array([46.0]), "decl": pa.array([1.0]),
            "b1": pa.array([0], pa.int8()), "bit1": pa.array([False]), "flag": pa.array([None], pa.bool_()),
            "i8": pa.array([127], pa.int8()), "u8": pa.array([0], pa.uint8()), "i16": pa.array([7], pa.int16()),
            "u16": pa.array([8], pa.uint16()), "i32": pa.array([9], pa.int32()), "u32": pa.array([10], pa.uint32()),
            "i64": pa.array([11], pa.int64()), "u64": pa.array([2**63], pa.uint64()),
            "f32": pa.array([0.5], pa.float32()), "f64": pa.array([0.25]), "c": pa.array(["x"]),
            "vc": pa.array(["y"]), "t": pa.array(["z"]), "bl": pa.array([b"\x00\xfe"], pa.binary()),
            "vb": pa.array([b""], pa.binary()), "ts": pa.array([dt.datetime(2020, 5, 6, 7, 8, 9)], pa.timestamp("us")),
            "dt": pa.array([None], pa.timestamp("us")), "d": pa.array([dt.date(2020, 1, 1)], pa.date32()),
        }
    )  # fmt: skip
    pq.write_table(table, tmp_path / "Typed.parquet")
    load_ok(tc, "--database", "kinds", "--table", "Typed", "--director", "--id", "id", "--lon", "ra", "--lat", "decl",
            str(tmp_path / "Typed.parquet"))  # fmt: skip
    got = query(tc, "SELECT b1, bit1, i8, u64, bl, vb, ts, d FROM Typed WHERE id = 3")
    assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in got] == [
        (0, False, 127, 2**63, b"\x00\xfe", b"", dt.datetime(2020, 5, 6, 7, 8, 9), dt.date(2020, 1, 1))
    ]

    # without --schema: a column that is not UTF-8 text is inferred as binary, unescaped
    inferred = tmp_path / "Inferred.tsv"
    inferred.write_bytes(b"id\tbl\tts\n1\t" + escaped.encode().replace("\xff".encode(), b"\xff")
                         + b"\t2010-01-02 03:04:05\n2\t\\N\t\\N\n")  # fmt: skip
    load_ok(tc, "--database", "kinds", "--table", "Inferred", "--regular", str(inferred))
    got = query(tc, "SELECT id, bl, ts FROM Inferred ORDER BY id")
    assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in got] == [
        (1, blob, dt.datetime(2010, 1, 2, 3, 4, 5)),
        (2, None, None),
    ]

    # a dump without a header line, as MySQL writes it: the existing table's columns, in order
    dump = tmp_path / "Typed.dump.tsv"
    fields = ["4", "46.5", "1.5", "1", "\x01", "0", "5", "6", "7", "8", "9", "10", "11", "12", "0.5", "0.75",
              '"q', "tab\\\tin", "line\\\nbreak\rcr", escaped, "\\N", "2012-01-01 00:00:00", "\\N", "\\N"]  # fmt: skip
    dump.write_bytes("\t".join(fields).encode().replace("\xff".encode(), b"\xff") + b"\n")
    load_ok(tc, "--database", "kinds", "--table", "Typed", "--director", "--id", "id", "--lon", "ra", "--lat", "decl",
            "--no-header", str(dump))  # fmt: skip
    got = query(tc, "SELECT bit1, c, vc, t, bl, vb, ts FROM Typed WHERE id = 4")
    assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in got] == [
        (True, '"q', "tab\tin", "line\nbreak\rcr", blob, None, dt.datetime(2012, 1, 1))
    ]
    err = load_error(tc, "--database", "kinds", "--table", "NoHeader", "--regular", "--no-header", str(dump))
    assert (
        "files without a header line (--no-header) need --schema: table kinds.NoHeader does not exist" in err
    )

    # type mismatches: named with file, line and column
    bad = tmp_path / "Bad.tsv"
    bad.write_text(
        data.splitlines()[0] + "\n" + "\t".join(line1[:10] + ["twelve"] + line1[11:]).replace("\\", "") + "\n"
    )
    err = load_error(tc, "--database", "kinds", "--table", "Typed", "--director", "--id", "id", "--lon", "ra",
                     "--lat", "decl", str(bad))  # fmt: skip
    assert f"{bad} line 2, column i32: cannot read 'twelve' as int32" in err
    err = load_error(tc, "--database", "kinds", "--table", "Typed2", "--director", "--id", "id", "--lon", "c",
                     "--lat", "decl", "--schema", str(schema), str(tsv))  # fmt: skip
    assert "--lon column c must be numeric, not string" in err
    pq.write_table(table.set_column(10, "i32", pa.array(["x"])), tmp_path / "Bad.parquet")
    err = load_error(tc, "--database", "kinds", "--table", "Typed", "--director", "--id", "id", "--lon", "ra",
                     "--lat", "decl", str(tmp_path / "Bad.parquet"))  # fmt: skip
    assert f"{tmp_path / 'Bad.parquet'} row 1, column i32: cannot convert 'x' to int32" in err


def _states(tc: LiveCluster) -> dict[str, WorkerState]:
    store = open_store(tc.spec.metadata())
    try:
        return {w.name: w.state for w in store.workers()}
    finally:
        store.close()


def test_worker_rejoins_with_a_hidden_flag_match_table(
    tc: LiveCluster, objects: dict[str, np.ndarray], refs: dict[str, np.ndarray], tmp_path: Path
) -> None:
    pairs = [(int(r), int(o)) for r, o in zip(refs["id"][:40], objects["id"][100:140], strict=True)]
    path = write_csv(tmp_path / "MR.csv", ["refId", "objectId"], pairs)
    load_ok(tc, "--database", "kinds", "--table", "MR", "--match", "--left", "Ref=refId", "--right", "Obj=objectId",
            str(path))  # fmt: skip
    name = tc.spec.worker_names()[0]
    tc.cluster.kill(name)
    wait_until(lambda: _states(tc)[name] is WorkerState.DOWN, 90, f"{name} is down")
    tc.cluster.start_worker(name)
    # rejoining creates every catalog table on the worker: the stored columns, hidden flag included
    wait_until(lambda: _states(tc)[name] is WorkerState.ACTIVE, 90, f"{name} rejoined")
    wait_until(lambda: _answers(tc, "SELECT COUNT(*) FROM MR"), 60, "the czar plans on it again")
    assert query(tc, "SELECT COUNT(*) FROM MR") == [(len(pairs),)]
    assert Counter(query(tc, "SELECT refId, objectId FROM MR")) == Counter(pairs)


def _answers(tc: LiveCluster, sql: str) -> bool:
    try:
        query(tc, sql)
        return True
    except psycopg.Error:
        return False


def test_director_row_of_a_pair_loaded_without_it_is_refused(tc: LiveCluster, tmp_path: Path) -> None:
    """A match pair loaded while one side had no director row is stored once, in the chunk of
    its other side: a later load of that director row is refused (naming the match table), so
    a join to both directors never misses the pair; other new rows load."""
    base = ["--database", "kinds", "--director", "--lon", "ra", "--lat", "decl"]
    a = write_csv(tmp_path / "a.csv", ["aid", "ra", "decl"], [(1, 10.0, 0.0), (2, 20.0, 5.0)])
    b = write_csv(tmp_path / "b.csv", ["bid", "ra", "decl"], [(11, 30.0, -5.0), (12, 40.0, 1.0)])
    load_ok(tc, *base, "--table", "LateA", "--id", "aid", str(a))
    load_ok(tc, *base, "--table", "LateB", "--id", "bid", str(b))
    # (3, 11): no LateA row 3 yet; (1, 13): no LateB row 13 yet
    pairs = write_csv(
        tmp_path / "ab.csv", ["aid", "bid", "w"], [(1, 11, 1), (2, 12, 2), (3, 11, 3), (1, 13, 4)]
    )
    load_ok(tc, "--database", "kinds", "--table", "LateAB", "--match", "--left", "LateA=aid", "--right",
            "LateB=bid", str(pairs))  # fmt: skip
    join = (
        "SELECT a.aid, b.bid, m.w FROM LateA a JOIN LateAB m ON m.aid = a.aid JOIN LateB b ON b.bid = m.bid "
        "ORDER BY m.w"
    )
    assert query(tc, join) == [(1, 11, 1), (2, 12, 2)]
    # row 3 of LateA, far from row 11 of LateB (whose chunk holds the pair's only copy)
    late_a = write_csv(tmp_path / "a3.csv", ["aid", "ra", "decl"], [(4, 12.0, 0.0), (3, 50.0, -3.0)])
    err = load_error(tc, *base, "--table", "LateA", "--id", "aid", str(late_a))
    assert (
        "director key 3 of kinds.latea has pairs in match table kinds.LateAB loaded without a kinds.latea row"
        in err
    )
    assert query(tc, "SELECT COUNT(*) FROM LateA WHERE ra >= 0") == [(2,)]  # nothing of it is visible
    late_b = write_csv(tmp_path / "b13.csv", ["bid", "ra", "decl"], [(13, 44.0, 2.0)])
    err = load_error(tc, *base, "--table", "LateB", "--id", "bid", str(late_b))
    assert "director key 13 of kinds.lateb has pairs in match table kinds.LateAB" in err
    assert query(tc, "SELECT COUNT(*) FROM LateB WHERE ra >= 0") == [(2,)]
    # rows no pair names load, and the join still answers every pair once
    load_ok(tc, *base, "--table", "LateA", "--id", "aid", str(write_csv(tmp_path / "a4.csv", ["aid", "ra", "decl"],
                                                                          [(4, 12.0, 0.0)])))  # fmt: skip
    assert query(tc, join) == [(1, 11, 1), (2, 12, 2)]
