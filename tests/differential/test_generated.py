"""Seeded random queries from a small grammar, each checked against the independent reference.

The grammar aims at what breaks a distributed planner: select-list aliases that shadow real
columns (``ra AS decl``), ORDER BY on output names, ordinals, expressions and non-selected
columns, ties under LIMIT, DISTINCT with ORDER BY (on selected and non-selected columns: the
latter PostgreSQL refuses, 42P10), GROUP BY by input name, alias, ordinal or expression,
HAVING, director-child and regular-table joins with aliases, a second database (``other``, of
another partitioning family), NULLs, and spatial restrictors.

A failure names its seed and query; rerun one with ``pytest -k 'test_generated and 17'`` or
print it with ``python -m tests.differential.test_generated 17``.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass

import pytest

from tests.differential.harness import FakeCluster

SEEDS = range(200)


@dataclass(frozen=True)
class Source:
    """A FROM clause and what can be said about its rows."""

    sql: str
    numeric: tuple[str, ...]  # qualified numeric columns (some nullable)
    ties: tuple[str, ...]  # few distinct values: ties under ORDER BY, GROUP BY keys
    names: tuple[str, ...]  # unqualified column names usable as shadowing aliases
    predicates: tuple[str, ...]
    key: str  # a unique-ish column, ORDER BY tiebreak


def _object_predicates(p: str) -> tuple[str, ...]:
    """WHERE terms over Object, its columns prefixed by ``p`` (``""`` or ``"o."``)."""
    return (
        f"{p}flags {{op}} {{i}}",
        f"{p}rFlux {{op}} {{f}}",
        f"{p}decl BETWEEN {{lat}} AND {{lat2}}",
        f"{p}gFlux IS NULL",
        f"{p}gFlux IS NOT NULL",
        f"{p}name = 'obj{{i}}'",
        f"scisql_angSep({p}ra, {p}decl, {{lon}}, {{lat}}) < {{r}}",
        "qserv_areaspec_box({lon}, {lat}, {lon2}, {lat2})",
        "qserv_areaspec_circle({lon}, {lat}, {r})",
        f"{p}objectId IN ({{k1}}, {{k2}}, {{k3}})",
    )


def _sources(rng: random.Random) -> list[Source]:
    o = rng.choice(["", "o"])  # Object unaliased, or aliased
    p = f"{o}." if o else ""
    obj_from = "Object" if not o else rng.choice(["Object o", "Object AS o"])
    obj_cols = ("ra", "decl", "gFlux", "rFlux", "iFlux", "rMag")
    join = rng.choice(["JOIN", "LEFT JOIN"])
    return [
        Source(obj_from, tuple(p + c for c in obj_cols), (f"{p}flags", f"{p}name"),
               (*obj_cols, "flags", "name", "objectId"), _object_predicates(p), f"{p}objectId"),
        Source(f"Object o {join} Source s ON s.objectId = o.objectId",
               ("o.ra", "o.decl", "o.rFlux", "s.psfFlux", "s.ra", "s.decl"), ("o.flags", "s.filterId"),
               ("ra", "decl", "psfFlux", "flags", "filterId", "rFlux"),
               (*_object_predicates("o."), "s.psfFlux > {f}", "s.filterId = {j}"), "s.sourceId"),
        Source("Source s JOIN Filter f ON f.filterId = s.filterId",
               ("s.psfFlux", "s.decl", "f.photClam"), ("f.filterName", "s.filterId"),
               ("psfFlux", "decl", "photClam", "filterName", "filterId"),
               ("s.psfFlux > {f}", "f.filterName <> 'g'", "s.objectId IN ({k1}, {k2})"), "s.sourceId"),
        Source(f"Object o {join} other.Band b ON b.filterId = o.flags",
               ("o.ra", "o.rMag", "b.width"), ("b.band", "o.flags"), ("ra", "rMag", "width", "band", "flags"),
               (*_object_predicates("o."), "b.band IS NULL", "b.width > {f2}"), "o.objectId"),
        Source(rng.choice(["other.Star t", "other.Star AS t"]), ("t.ra", "t.decl", "t.vMag"), ("t.flags",),
               ("ra", "decl", "vMag", "flags", "starId"),
               ("t.vMag > {m}", "t.vMag IS NULL", "qserv_areaspec_circle({lon}, {lat}, {r})",
                "qserv_areaspec_box({lon}, {lat}, {lon2}, {lat2})", "t.flags = {i}"), "t.starId"),
        Source("other.Star t JOIN Filter f ON f.filterId = t.flags", ("t.vMag", "f.photClam"),
               ("f.filterName", "t.flags"), ("vMag", "photClam", "filterName", "flags"),
               ("t.vMag < {m}", "t.decl > {lat}"), "t.starId"),
    ]  # fmt: skip


def _fill(rng: random.Random, template: str) -> str:
    lat = round(rng.uniform(-80, 70), 2)
    return template.format(
        op=rng.choice(["<", ">", "=", "<=", "<>"]),
        i=rng.randint(0, 7),
        j=rng.randint(0, 5),
        f=round(rng.uniform(0, 60), 1),
        f2=round(rng.uniform(50, 150), 1),
        m=round(rng.uniform(12, 18), 2),
        lon=round(rng.uniform(0, 360), 2),
        lon2=round(rng.uniform(0, 360), 2),
        lat=lat,
        lat2=round(min(90.0, lat + rng.uniform(0.5, 20)), 2),
        r=round(rng.uniform(0.5, 15), 2),
        k1=1000 + 3 * rng.randint(0, 2500),
        k2=1000 + 3 * rng.randint(0, 2500),
        k3=rng.randint(0, 10),
    )


def _bare(column: str) -> str:
    return column.split(".")[-1]


def _alias(rng: random.Random, expr: str, src: Source, used: set[str]) -> tuple[str, str]:
    """``expr`` with maybe an alias (often one that shadows another real column); its output name."""
    roll = rng.random()
    if roll < 0.35:
        shadow = [n for n in src.names if n.lower() != _bare(expr).lower() and n.lower() not in used]
        if shadow:
            name = rng.choice(shadow)
            return f"{expr} AS {name}", name
    if roll < 0.55:
        name = f"x{len(used)}"
        return f"{expr} AS {name}", name
    return expr, _bare(expr) if "(" not in expr and " " not in expr else ""


def _where(rng: random.Random, src: Source) -> str:
    preds = rng.sample(src.predicates, rng.randint(0, min(2, len(src.predicates))))
    if sum("areaspec" in p for p in preds) > 1:
        preds = [p for p in preds if "areaspec" not in p][:1]
    return f" WHERE {' AND '.join(_fill(rng, p) for p in preds)}" if preds else ""


def _order(
    rng: random.Random, items: list[tuple[str, str]], src: Source, distinct: bool, grouped: str = ""
) -> str:
    """ORDER BY keys: output names, ordinals, expressions, non-selected columns (``grouped``:
    the GROUP BY expression, whose queries order by it, outputs or aggregates)."""
    keys = []
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        named = [n for _, n in items if n]
        if roll < 0.3 and named:
            key = rng.choice(named)
        elif roll < 0.5:
            key = str(rng.randint(1, len(items)))
        elif roll < 0.52:
            key = rng.choice(["0", str(len(items) + 1)])  # past the select list: refused
        elif grouped:
            key = rng.choice(
                [grouped, "COUNT(*)", f"MAX({rng.choice(src.numeric)})", "2" if len(items) > 1 else "1"]
            )
        elif distinct and roll < 0.8:
            key = rng.choice([e for e, _ in items]).split(" AS ")[0]
        elif roll < 0.7:
            key = rng.choice(
                [
                    f"{rng.choice(src.numeric)} * 2",
                    f"-{rng.choice(src.numeric)}",
                    f"ABS({rng.choice(src.numeric)})",
                ]
            )
        else:
            key = rng.choice(src.numeric + src.ties)  # maybe not selected
        keys.append(key + rng.choice(["", "", " DESC", " ASC"]))
    if not distinct and not grouped and rng.random() < 0.5:
        keys.append(src.key)  # a full order sometimes
    limit = f" LIMIT {rng.randint(1, 12)}" if rng.random() < 0.6 else ""
    return f" ORDER BY {', '.join(keys)}{limit}"


AGGREGATES = ("COUNT(*)", "COUNT({c})", "SUM({c})", "MIN({c})", "MAX({c})", "AVG({c})")


def generate_query(seed: int) -> str:
    """One random query from the grammar."""
    rng = random.Random(seed)
    src = rng.choice(_sources(rng))
    where = _where(rng, src)
    shape = rng.choice(["plain", "plain", "plain", "distinct", "agg", "group", "group"])
    used: set[str] = set()
    items: list[tuple[str, str]] = []
    if shape == "plain":
        pool = [src.key, *rng.sample(src.numeric, rng.randint(1, min(3, len(src.numeric))))]
        if rng.random() < 0.4:
            a, b = rng.sample(src.numeric, 2)
            pool.append(rng.choice([f"{a} - {b}", f"COALESCE({a}, -1)", f"{a} * 2 + 1"]))
        for expr in pool:
            item = _alias(rng, expr, src, used)
            used.add(item[1].lower())
            items.append(item)
        order = _order(rng, items, src, distinct=False) if rng.random() < 0.7 else ""
        return f"SELECT {', '.join(e for e, _ in items)} FROM {src.sql}{where}{order}"
    if shape == "distinct":
        for expr in rng.sample(list(src.ties), rng.randint(1, len(src.ties))):
            item = _alias(rng, expr, src, used)
            used.add(item[1].lower())
            items.append(item)
        order = _order(rng, items, src, distinct=True) if rng.random() < 0.8 else ""
        return f"SELECT DISTINCT {', '.join(e for e, _ in items)} FROM {src.sql}{where}{order}"
    aggs = [a.format(c=rng.choice(src.numeric)) for a in rng.sample(AGGREGATES, rng.randint(1, 3))]
    if shape == "agg":
        return f"SELECT {', '.join(aggs)} FROM {src.sql}{where}"
    group = rng.choice(src.ties)
    if rng.random() < 0.25:
        group = f"LOWER({group})" if "name" in group.lower() or "band" in group else f"{group} % 3"
    item = _alias(rng, group, src, used)
    used.add(item[1].lower())
    items.append(item)
    for a in aggs:
        agg_item = _alias(rng, a, src, used) if rng.random() < 0.5 else (a, "")
        used.add(agg_item[1].lower())
        items.append(agg_item)
    by = rng.choice(
        [group, "1", group]
        + ([item[1]] if item[1] and item[1].lower() not in (n.lower() for n in src.names) else [])
        + ([item[1]] if item[1] else [])  # an alias that may shadow an input column: binds to it
    )
    having = rng.choice(["", "", " HAVING COUNT(*) > {n}", f" HAVING MAX({rng.choice(src.numeric)}) > {{f}}"])
    having = having.format(n=rng.randint(1, 60), f=round(rng.uniform(0, 60), 1))
    order = _order(rng, items, src, distinct=False, grouped=group) if rng.random() < 0.8 else ""
    return f"SELECT {', '.join(e for e, _ in items)} FROM {src.sql}{where} GROUP BY {by}{having}{order}"


@pytest.mark.parametrize("seed", SEEDS)
def test_generated(cluster: FakeCluster, seed: int) -> None:
    sql = generate_query(seed)
    try:
        cluster.check(sql, seed=seed)
    except AssertionError as e:
        raise AssertionError(f"[seed {seed}] {sql}\n{e}") from None


if __name__ == "__main__":  # print the queries of the seeds given
    for arg in sys.argv[1:] or ["0"]:
        print(arg, generate_query(int(arg)))
