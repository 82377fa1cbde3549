"""A generated sample catalog (Object director, Source child, Filter regular).

Used by ``qserv demo`` and ``make bench``. Positions are uniform over a sky patch plus dense
clumps (clusters of galaxies), so chunk boundaries, overlaps and skewed chunks all occur;
fluxes have NULLs as real catalogs do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FILTERS = ("u", "g", "r", "i", "z", "y")


@dataclass(frozen=True)
class SampleSpec:
    objects: int = 100_000
    sources_per_object: float = 2.0
    seed: int = 42
    # a patch of sky (degrees); the whole sky is 0..360, -90..90
    ra_min: float = 0.0
    ra_max: float = 360.0
    dec_min: float = -90.0
    dec_max: float = 90.0


def _positions(rng: np.random.Generator, n: int, spec: SampleSpec) -> tuple[np.ndarray, np.ndarray]:
    n_clump = n // 10
    n_uniform = n - n_clump
    # uniform on the sphere within the patch: uniform in sin(dec)
    s_lo, s_hi = np.sin(np.radians(spec.dec_min)), np.sin(np.radians(spec.dec_max))
    dec = np.degrees(np.arcsin(rng.uniform(s_lo, s_hi, n_uniform)))
    ra = rng.uniform(spec.ra_min, spec.ra_max, n_uniform)
    centres = max(1, n_clump // 2000)
    c_ra = rng.uniform(spec.ra_min, spec.ra_max, centres)
    c_dec = np.degrees(np.arcsin(rng.uniform(s_lo, s_hi, centres)))
    pick = rng.integers(0, centres, n_clump)
    spread = 0.05
    d_dec = np.clip(c_dec[pick] + rng.normal(0, spread, n_clump), spec.dec_min, spec.dec_max)
    d_ra = (c_ra[pick] + rng.normal(0, spread, n_clump) / np.maximum(np.cos(np.radians(d_dec)), 0.05)) % 360.0
    return np.concatenate([ra, d_ra]), np.concatenate([dec, d_dec])


def objects(spec: SampleSpec) -> pa.Table:
    rng = np.random.default_rng(spec.seed)
    n = spec.objects
    ra, dec = _positions(rng, n, spec)
    object_id = np.arange(1, n + 1, dtype=np.int64) * 3 + 1000  # sparse ids, as real catalogs
    columns: dict[str, pa.Array] = {
        "objectId": pa.array(object_id),
        "ra": pa.array(ra),
        "decl": pa.array(dec),
    }
    for f in ("g", "r", "i"):
        flux = rng.lognormal(3.0, 1.0, n)
        mask = rng.random(n) < 0.05
        columns[f"{f}_psfFlux"] = pa.array(flux, mask=mask)
    columns["extendedness"] = pa.array(rng.integers(0, 2, n).astype(np.int32))
    return pa.table(columns)


def sources(spec: SampleSpec, obj: pa.Table) -> pa.Table:
    rng = np.random.default_rng(spec.seed + 1)
    n_obj = obj.num_rows
    counts = rng.poisson(spec.sources_per_object, n_obj)
    parent = np.repeat(np.arange(n_obj), counts)
    n = parent.size
    ra = obj.column("ra").to_numpy()[parent] + rng.normal(0, 1e-4, n)
    dec = np.clip(obj.column("decl").to_numpy()[parent] + rng.normal(0, 1e-4, n), -90, 90)
    flux = rng.lognormal(3.0, 1.0, n)
    return pa.table(
        {
            "sourceId": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "objectId": pa.array(obj.column("objectId").to_numpy()[parent]),
            "ra": pa.array(ra % 360.0),
            "decl": pa.array(dec),
            "filterId": pa.array(rng.integers(0, len(FILTERS), n).astype(np.int32)),
            "psfFlux": pa.array(flux, mask=rng.random(n) < 0.03),
        }
    )


def filters() -> pa.Table:
    return pa.table(
        {
            "filterId": pa.array(range(len(FILTERS)), pa.int32()),
            "filterName": pa.array(list(FILTERS)),
            "photClam": pa.array([3671.0, 4827.0, 6223.0, 7546.0, 8691.0, 9712.0]),
        }
    )


def sample_paths(out_dir: Path) -> dict[str, Path]:
    """Where :func:`write` puts each table."""
    return {name: out_dir / f"{name}.parquet" for name in ("Object", "Source", "Filter")}


def write(spec: SampleSpec, out_dir: Path) -> dict[str, Path]:
    """Write Object, Source and Filter as Parquet files; return their paths by table name.

    Each file appears whole or not at all (written aside, then renamed), Filter last: an
    interrupted run (Ctrl-C of ``qserv demo``) leaves no Filter file, so the next writes all
    again instead of loading a truncated file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = sample_paths(out_dir)
    obj = objects(spec)
    _write_whole(obj, paths["Object"])
    _write_whole(sources(spec, obj), paths["Source"])
    _write_whole(filters(), paths["Filter"])
    return paths


def _write_whole(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def load_arguments(paths: dict[str, Path]) -> dict[str, list[str]]:
    """``qserv load`` arguments (after ``--url``/``--database``) for each written table, in load order."""
    return {
        "Object": [
            "--table",
            "Object",
            "--director",
            "--id",
            "objectId",
            "--lon",
            "ra",
            "--lat",
            "decl",
            str(paths["Object"]),
        ],
        "Source": ["--table", "Source", "--child-of", "Object", "--key", "objectId", str(paths["Source"])],
        "Filter": ["--table", "Filter", "--regular", str(paths["Filter"])],
    }
