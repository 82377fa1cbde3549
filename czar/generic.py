"""Generic plans: a query differing from a planned one only in its director keys reuses its plan.

Object lookups arrive as one text with another key each time (``... WHERE objectId = 1003``;
psycopg binds ``$1`` and pgwire writes the value in, see czar/pgwire/params.py). Parsing,
analyzing and splitting such a query is ~2 ms of sqlglot, most of a lookup's latency, while its
plan differs from the last one only in the key's SQL text and in the chunks the director index
gives for it. So the pipeline keeps, per metadata snapshot and query *shape* (the token stream
with constants masked, :func:`shape_of`), a :class:`KeyTemplate`: the split plan with a marker
where each key constant goes. A query of that shape is planned by :func:`rebind` (look the keys
up, write them into the markers, assign replicas) without parsing::

    SELECT * FROM Object WHERE objectId = 1003
    shape:    SELECT * FROM Object WHERE objectId = <NUMBER>
    template: worker SELECT ... WHERE <chunk filter> AND "Object"."objectId" = __QSERV_KEY_0__
    SELECT * FROM Object WHERE objectId = 2041   -> keys (2041,), no parse

Only constants the analyzer took as director keys vary (``key = c``/``key IN (c, ...)``
top-level conjuncts); every other token, constants included, must be identical; a key written
as an integer must stay a plain integer (else the full path runs, as it would take another
strategy). A template exists only when each key marker lands exactly once in the worker SQL and
nowhere in the merge, so writing a key in is the same text the full path would produce.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from czar.analyze.model import AnalyzedQuery
from czar.analyze.restrictors import common_keys
from czar.dialect import Qserv
from czar.plan import PlanContext, QueryPlan, place, skeleton
from czar.plan.chunks import ChunkChoice, chunks_with_rows, key_chunks
from czar.plan.split import split

MARKER = "__QSERV_KEY_{}__"
_MARKERS = re.compile(r"__QSERV_KEY_([0-9]+)__")
_CONSTANTS = frozenset({TokenType.NUMBER, TokenType.STRING})


@dataclass(frozen=True)
class Shape:
    """A query's tokens with constants masked (``key``) and its constant tokens in order."""

    key: tuple[object, ...]
    constants: tuple[Token, ...]


@dataclass(frozen=True)
class KeyTemplate:
    """A director-key plan with a marker for each key constant (index into the shape's constants)."""

    skeleton: QueryPlan  # no chunks, no batches; key markers in worker_template
    director: tuple[str, str]  # (database, director table) the keys are looked up in
    tables: tuple[tuple[str, str], ...]  # the chunked tables, (db, table) lower
    databases: frozenset[str]  # of every table referenced (they select the family)
    terms: tuple[tuple[int, ...], ...]  # per key conjunct, its constants' indices
    fixed: tuple[tuple[int, str], ...]  # (index, text) of every other constant


def shape_of(sql: str) -> Shape | None:
    """The shape of ``sql`` (None when it does not tokenize: the parser will say why)."""
    try:
        tokens = Qserv().tokenize(sql)
    except TokenError:
        return None
    key: list[object] = []
    constants: list[Token] = []
    for token in tokens:
        if token.token_type in _CONSTANTS:
            key.append(token.token_type)
            constants.append(token)
        else:
            key.append((token.token_type, token.text))
    return Shape(tuple(key), tuple(constants))


def template(q: AnalyzedQuery, shape: Shape) -> KeyTemplate | None:
    """The generic form of ``q``'s plan, or None when its keys cannot vary safely."""
    restriction = q.director_keys
    if restriction is None or q.region is not None:
        return None
    by_start = {token.start: i for i, token in enumerate(shape.constants)}
    terms: list[tuple[int, ...]] = []
    for term in restriction.terms:
        indices = []
        for node in term:
            # a constant written as-is (not -5, not a cast): its token is the key's whole text
            i = _constant_index(node, by_start) if isinstance(node, exp.Literal) else None
            if i is None:
                return None
            indices.append(i)
        terms.append(tuple(indices))
    slots = {i for term in terms for i in term}
    marked = q.tree.copy()
    for literal in list(marked.find_all(exp.Literal)):
        i = _constant_index(literal, by_start)
        if i is not None and i in slots:
            literal.replace(exp.var(MARKER.format(i)))
    parts = split(dataclasses.replace(q, tree=marked))
    for i in slots:
        marker = MARKER.format(i)
        if parts.worker_template.count(marker) != 1 or marker in parts.merge_sql:
            return None
    return KeyTemplate(
        skeleton=skeleton(q, parts, ChunkChoice("director-key", (), ())),
        director=restriction.director,
        tables=tuple(sorted({ref.key for ref in q.chunked})),
        databases=frozenset(ref.table.database for ref in q.tables),
        terms=tuple(terms),
        fixed=tuple((i, t.text) for i, t in enumerate(shape.constants) if i not in slots),
    )


def _constant_index(node: exp.Expr, by_start: dict[int, int]) -> int | None:
    start = node.meta.get("start")
    return by_start.get(start) if isinstance(start, int) else None


def rebind(generic: KeyTemplate, shape: Shape, ctx: PlanContext) -> QueryPlan | None:
    """The plan of a query of ``generic``'s shape, or None when it must be planned in full."""
    constants = shape.constants
    if any(constants[i].text != text for i, text in generic.fixed):
        return None
    texts: dict[int, str] = {}
    values: list[list[int | str]] = []
    for term in generic.terms:
        keys: list[int | str] = []
        for i in term:
            token = constants[i]
            if token.token_type is TokenType.STRING:
                keys.append(token.text)
                texts[i] = exp.Literal.string(token.text).sql(dialect="duckdb")
            elif token.text.isascii() and token.text.isdigit():
                keys.append(int(token.text))
                texts[i] = exp.Literal.number(token.text).sql(dialect="duckdb")
            else:
                return None  # 1.5 or 1e3 is no key: the full path plans another strategy
        values.append(keys)
    rows, _ = chunks_with_rows(ctx, generic.tables)
    choice = key_chunks(generic.director, common_keys(values), rows, None, ctx)
    worker = _MARKERS.sub(lambda m: texts.get(int(m.group(1)), m.group(0)), generic.skeleton.worker_template)
    return place(
        dataclasses.replace(generic.skeleton, worker_template=worker, chunk_ids=choice.chunk_ids), ctx
    )
