"""Stage 2: check a parsed query against the catalog and extract what the planner needs.

Passes, in order (each module's docstring shows its before/after):

1. guard        only SELECT, allowed functions; writes/files refused (42501/42883)
2. shape        sub-queries, CTEs, windows, OFFSET, COUNT(DISTINCT) ... refused (0A000)
3. resolve      tables and columns bound case-insensitively; ``*`` expanded
   names        ORDER BY/GROUP BY/HAVING names: alias or input column, as DuckDB binds them
4. classify     director/child/regular; one family of chunked tables
5. joins        only chunk-local joins (director-child on keys); returns the chunk joins
6. regions      areaspecs/sciSQL restrictors -> region + row predicates (regions.py); director keys
7. aggregates   aggregation and GROUP BY keys
8. output       result names and types as single-node DuckDB gives them

The tree is copied once here and rewritten in place by the passes.
"""

from __future__ import annotations

from sqlglot import exp

from czar.analyze.aggregates import analyze_aggregates
from czar.analyze.classify import classify
from czar.analyze.guard import guard
from czar.analyze.joins import check_joins
from czar.analyze.model import AggregateInfo, AnalyzedQuery, ChunkJoin, KeyRestriction, Region, TableRef
from czar.analyze.names import bind_names
from czar.analyze.output import describe
from czar.analyze.regions import expand_cpoly, extract_region
from czar.analyze.resolve import as_written, expand_stars, resolve_columns, resolve_tables
from czar.analyze.restrictors import extract_keys
from czar.analyze.shape import shape
from qserv.catalog import Catalog, TableKind

__all__ = [
    "PASSES",
    "AggregateInfo",
    "AnalyzedQuery",
    "ChunkJoin",
    "KeyRestriction",
    "Region",
    "TableRef",
    "analyze",
]

PASSES = (
    guard,
    shape,
    resolve_tables,
    expand_stars,
    resolve_columns,
    bind_names,
    classify,
    check_joins,
    extract_region,
    extract_keys,
    analyze_aggregates,
    describe,
    expand_cpoly,
)


def analyze(tree: exp.Expr, catalog: Catalog, default_db: str, sql: str = "") -> AnalyzedQuery:
    """Run :data:`PASSES` over a copy of ``tree``; raise a typed QservError on refusal."""
    select = guard(tree).copy()
    shape(select)
    refs = resolve_tables(select, catalog, default_db)
    expand_stars(select, refs)
    resolve_columns(select, refs)
    bind_names(select, refs)
    partitioning = classify(refs, catalog)
    chunk_joins = check_joins(select, refs)
    region = extract_region(select, refs, partitioning)
    children = frozenset(r.alias.lower() for r in refs if r.kind is TableKind.CHILD)
    keys = extract_keys(select, refs, children)
    aggregates = analyze_aggregates(select)
    written = as_written(select)
    columns, types = describe(written, refs)
    # after describe: result names are those of the calls as written
    expand_cpoly(select)
    if any(g.find(exp.Anonymous) for g in aggregates.group_by):
        aggregates = AggregateInfo(aggregates.aggregated, tuple(expand_cpoly(g) for g in aggregates.group_by))
    return AnalyzedQuery(
        sql=sql or tree.sql(),
        tree=select,
        written=written,
        tables=refs,
        chunk_joins=chunk_joins,
        region=region,
        director_keys=keys,
        aggregates=aggregates,
        columns=columns,
        types=types,
        partitioning=partitioning,
    )
