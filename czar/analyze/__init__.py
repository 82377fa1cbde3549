"""Stage 2: check a parsed query against the catalog and extract what the planner needs.

Passes, in order (each module's docstring shows its before/after):

0. geometry     ADQL geometry (CONTAINS, POINT, DISTANCE, ...) -> sciSQL calls
1. guard        only SELECT, allowed functions; writes/files refused (42501/42883)
2. shape        set operations, windows, ROLLUP, non-splittable aggregates ... refused (0A000);
                sub-queries and CTEs never get here: the pipeline runs them as a program of
                steps first (subqueries.py, czar/steps.py)
3. resolve      tables and columns bound (unquoted: any case; "quoted": exactly); ``*`` expanded; USING/NATURAL
                merged columns (using.py)
   names        ORDER BY/GROUP BY/HAVING names: alias or input column, as DuckDB binds them
4. classify     director/child/regular; one family of chunked tables
5. joins        only chunk-local joins (director-child on keys, match tables, near-neighbour
                within the overlap); returns the chunk joins and match copies
6. regions      areaspecs/sciSQL restrictors -> region + row predicates (regions.py); director keys
7. aggregates   aggregation and GROUP BY keys
8. output       result names and types as single-node DuckDB gives them

The tree is copied once here and rewritten in place by the passes.
"""

from __future__ import annotations

from sqlglot import exp

from czar.analyze.aggregates import analyze_aggregates
from czar.analyze.classify import classify
from czar.analyze.geometry import rewrite_geometry
from czar.analyze.guard import guard
from czar.analyze.joins import check_joins
from czar.analyze.model import (
    AggregateInfo,
    AnalyzedQuery,
    ChunkJoin,
    JoinKind,
    KeyRestriction,
    Region,
    TableRef,
)
from czar.analyze.names import bind_names
from czar.analyze.output import describe, describe_known
from czar.analyze.regions import expand_cpoly, extract_region, grow_for_overlap
from czar.analyze.resolve import as_written, expand_stars, resolve_columns, resolve_tables
from czar.analyze.restrictors import extract_keys, extract_range
from czar.analyze.shape import shape
from czar.parse import copy_tree
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
    rewrite_geometry,
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
    select = guard(rewrite_geometry(copy_tree(tree)))
    shape(select)
    refs = resolve_tables(select, catalog, default_db)
    expand_stars(select, refs)
    resolve_columns(select, refs)
    bind_names(select, refs)
    partitioning = classify(refs, catalog)
    joins = check_joins(select, refs, partitioning)
    chunk_joins = joins.chunk_joins
    region = extract_region(select, refs, partitioning)
    children = frozenset(r.alias.lower() for r in refs if r.kind is TableKind.CHILD)
    # read with their overlap rows: their keys do not say which chunk answers
    overlapped = frozenset(
        j.right.lower() for j in chunk_joins if j.kind in (JoinKind.NEAR, JoinKind.OVERLAP)
    )
    keys = extract_keys(select, refs, children, overlapped)
    key_range = extract_range(select, refs, children, overlapped)
    region = grow_for_overlap(region, overlapped, partitioning)
    aggregates = analyze_aggregates(select)
    known = describe_known(select, refs)
    written: exp.Select | None = None
    if known is not None:
        # typed from the catalog: every node was one the typing knows, so no sciSQL polygon
        # is written out below and the written form can be made from the final tree on use
        columns, types = known
    else:
        written = as_written(select)
        columns, types = describe(written, refs)
    # after describe: result names are those of the calls as written (none when typed from the
    # catalog: its typing knows no polygon call)
    if known is None:
        expand_cpoly(select)
    if known is None and any(g.find(exp.Anonymous) for g in aggregates.group_by):
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
        director_range=key_range,
        match_copies=joins.match_copies,
    )
