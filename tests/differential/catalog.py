"""A generated sky catalog for differential tests: Object (director), Source (child), Filter.

A second database, ``other``, has another partitioning (another family: a chunk order one
below ``sky``'s, so its chunks live elsewhere): a director ``Star`` and a regular ``Band``
keyed like ``Filter``, for queries that span two databases.

Positions are drawn to stress the partitioning: rows right at chunk boundaries, dense clumps,
rows at both poles and across ra = 0/360, plus a uniform background.  Flux columns carry NULLs.
Everything is seeded: the same (seed, size) gives the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import healpy as hp
import numpy as np
import pyarrow as pa

from qserv.catalog import Catalog, Column, Database, Partitioning, Table, TableKind

DATABASE = "sky"
OTHER = "other"


@dataclass(frozen=True)
class GeneratedCatalog:
    databases: tuple[Database, ...]  # the session's database first
    tables: tuple[Table, ...]  # catalog definitions (user columns only)
    data: dict[tuple[str, str], pa.Table]  # (database, table name) -> rows

    @property
    def database(self) -> Database:
        """The session's (default) database."""
        return self.databases[0]

    @property
    def catalog(self) -> Catalog:
        return Catalog(databases=self.databases, tables=self.tables)

    def rows(self, name: str, database: str = DATABASE) -> pa.Table:
        """The rows of one table."""
        return self.data[(database, name)]

    def plain_duckdb(self, empty: bool = False) -> duckdb.DuckDBPyConnection:
        """One plain DuckDB (no project macros) holding these tables, one schema per database,
        unqualified names resolving in the session's database (``empty``: no rows)."""
        conn = duckdb.connect(":memory:", config={"threads": 1})
        for (database, name), rows in self.data.items():
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
            conn.register("__load", rows.slice(0, 0) if empty else rows)
            conn.execute(f'CREATE TABLE "{database}"."{name}" AS SELECT * FROM __load')
            conn.unregister("__load")
        conn.execute(f'USE "{self.database.name}"')
        return conn


def _positions(rng: np.random.Generator, n: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    parts = [n // 5] * 4
    parts.append(n - sum(parts))
    lon: list[np.ndarray] = []
    lat: list[np.ndarray] = []
    # 1. uniform on the sphere
    lon.append(rng.uniform(0, 360, parts[0]))
    lat.append(np.degrees(np.arcsin(rng.uniform(-1, 1, parts[0]))))
    # 2. on chunk boundaries (a hair inside or outside a pixel corner/edge)
    nside = 1 << order
    pix = rng.integers(0, hp.nside2npix(nside), parts[1])
    bounds = hp.boundaries(nside, pix, step=2, nest=True)  # (n, 3, 8)
    k = rng.integers(0, bounds.shape[2], parts[1])
    vec = bounds[np.arange(parts[1]), :, k] + rng.normal(0, 1e-7, (parts[1], 3))
    blon, blat = hp.vec2ang(vec, lonlat=True)
    lon.append(blon)
    lat.append(blat)
    # 3. dense clumps
    centres = [(10.0, 5.0), (200.0, -30.0), (0.2, 0.1)]
    c = rng.integers(0, len(centres), parts[2])
    lon.append((np.array([centres[i][0] for i in c]) + rng.normal(0, 0.3, parts[2])) % 360.0)
    lat.append(np.clip(np.array([centres[i][1] for i in c]) + rng.normal(0, 0.3, parts[2]), -90, 90))
    # 4. poles
    sign = np.where(rng.uniform(size=parts[3]) < 0.5, -1.0, 1.0)
    lon.append(rng.uniform(0, 360, parts[3]))
    lat.append(sign * (90.0 - rng.exponential(0.5, parts[3]).clip(0, 5)))
    # 5. across ra = 0/360
    lon.append(rng.normal(0, 0.5, parts[4]) % 360.0)
    lat.append(rng.uniform(-10, 10, parts[4]))
    return np.concatenate(lon) % 360.0, np.clip(np.concatenate(lat), -90.0, 90.0)


def _with_nulls(rng: np.random.Generator, values: np.ndarray, fraction: float) -> pa.Array:
    mask = rng.uniform(size=len(values)) < fraction
    return pa.array(values, mask=mask)


def generate(seed: int = 1, n_objects: int = 2000, order: int = 4, other: bool = True) -> GeneratedCatalog:
    """Object/Source/Filter rows (and ``other``'s Star/Band unless not ``other``) with their
    qserv table definitions."""
    rng = np.random.default_rng(seed)
    ra, decl = _positions(rng, n_objects, order)
    object_id = rng.permutation(n_objects).astype(np.int64) * 3 + 1000
    flux_g = rng.lognormal(3, 1, n_objects)
    flux_r = rng.lognormal(3, 1, n_objects)
    flux_i = rng.normal(20, 10, n_objects)
    names = np.array([f"obj{i % 97}" for i in range(n_objects)], dtype=object)
    obj = pa.table(
        {
            "objectId": pa.array(object_id, pa.int64()),
            "ra": pa.array(ra),
            "decl": pa.array(decl),
            "gFlux": _with_nulls(rng, flux_g, 0.1),
            "rFlux": _with_nulls(rng, flux_r, 0.1),
            "iFlux": _with_nulls(rng, flux_i, 0.05),
            "rMag": _with_nulls(rng, -2.5 * np.log10(flux_r) + 31.4, 0.1),
            "flags": pa.array(rng.integers(0, 8, n_objects).astype(np.int32), pa.int32()),
            "name": _with_nulls(rng, names, 0.05),
        }
    )
    per = rng.integers(0, 5, n_objects)
    owner = np.repeat(np.arange(n_objects), per)
    n_sources = len(owner)
    src = pa.table(
        {
            "sourceId": pa.array(np.arange(n_sources, dtype=np.int64) * 7 + 11, pa.int64()),
            "objectId": pa.array(object_id[owner], pa.int64()),
            "ra": pa.array((ra[owner] + rng.normal(0, 1e-4, n_sources)) % 360.0),
            "decl": pa.array(np.clip(decl[owner] + rng.normal(0, 1e-4, n_sources), -90, 90)),
            "psfFlux": _with_nulls(rng, rng.normal(50, 30, n_sources), 0.1),
            "filterId": _with_nulls(rng, rng.integers(0, 6, n_sources).astype(np.int32), 0.02),
        }
    )
    src = src.set_column(5, "filterId", src.column("filterId").cast(pa.int32()))
    flt = pa.table(
        {
            "filterId": pa.array(np.arange(6, dtype=np.int32), pa.int32()),
            "filterName": pa.array(list("ugrizy")),
            "photClam": pa.array([355.0, 475.0, 620.0, 750.0, 870.0, 1000.0]),
        }
    )

    def cols(t: pa.Table, types: dict[str, str]) -> tuple[Column, ...]:
        return tuple(Column(n, types[n]) for n in t.column_names)

    types = {
        "objectId": "BIGINT", "sourceId": "BIGINT", "ra": "DOUBLE", "decl": "DOUBLE",
        "gFlux": "DOUBLE", "rFlux": "DOUBLE", "iFlux": "DOUBLE", "rMag": "DOUBLE",
        "flags": "INTEGER", "name": "VARCHAR", "psfFlux": "DOUBLE", "filterId": "INTEGER",
        "filterName": "VARCHAR", "photClam": "DOUBLE",
    }  # fmt: skip
    database = Database(DATABASE, Partitioning(order=order, sub_order=order + 3))
    tables = (
        Table(DATABASE, "Object", TableKind.DIRECTOR, cols(obj, types), id_column="objectId",
              lon_column="ra", lat_column="decl"),
        Table(DATABASE, "Source", TableKind.CHILD, cols(src, types), director="Object",
              key_column="objectId"),
        Table(DATABASE, "Filter", TableKind.REGULAR, cols(flt, types)),
    )  # fmt: skip
    data = {(DATABASE, "Object"): obj, (DATABASE, "Source"): src, (DATABASE, "Filter"): flt}
    if not other:
        return GeneratedCatalog((database,), tables, data)
    other_db, other_tables, other_data = _other(np.random.default_rng(seed + 1000), n_objects // 4, order - 1)
    return GeneratedCatalog((database, other_db), tables + other_tables, {**data, **other_data})


def _other(
    rng: np.random.Generator, n_stars: int, order: int
) -> tuple[Database, tuple[Table, ...], dict[tuple[str, str], pa.Table]]:
    """Database ``other`` (chunk order ``order``): director Star and regular Band."""
    ra, decl = _positions(rng, n_stars, order)
    star = pa.table(
        {
            "starId": pa.array(rng.permutation(n_stars).astype(np.int64) * 5 + 7, pa.int64()),
            "ra": pa.array(ra),
            "decl": pa.array(decl),
            "vMag": _with_nulls(rng, rng.normal(15, 2, n_stars), 0.1),
            "flags": pa.array(rng.integers(0, 4, n_stars).astype(np.int32), pa.int32()),
        }
    )
    band = pa.table(
        {
            "filterId": pa.array(np.arange(0, 8, dtype=np.int32), pa.int32()),
            "band": _with_nulls(rng, np.array(list("ugrizyUV"), dtype=object), 0.2),
            "width": pa.array(rng.uniform(50, 150, 8)),
        }
    )
    db = Database(OTHER, Partitioning(order=order, sub_order=order + 3))
    tables = (
        Table(OTHER, "Star", TableKind.DIRECTOR,
              (Column("starId", "BIGINT"), Column("ra", "DOUBLE"), Column("decl", "DOUBLE"),
               Column("vMag", "DOUBLE"), Column("flags", "INTEGER")),
              id_column="starId", lon_column="ra", lat_column="decl"),
        Table(OTHER, "Band", TableKind.REGULAR,
              (Column("filterId", "INTEGER"), Column("band", "VARCHAR"), Column("width", "DOUBLE"))),
    )  # fmt: skip
    return db, tables, {(OTHER, "Star"): star, (OTHER, "Band"): band}
