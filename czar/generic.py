"""Generic plans: a query differing from a planned one only in its restrictor constants reuses its plan.

Object lookups and cone searches arrive as one text with other constants each time
(``... WHERE objectId = 1003``; psycopg binds ``$1`` and pgwire writes the value in, see
czar/pgwire/params.py). Parsing, analyzing and splitting such a query is 2-3 ms of sqlglot, most
of its latency, while its plan differs from the last one only in the SQL text of the director
keys or of the areaspec's row predicate, and in the chunks they select. So the pipeline keeps,
per metadata snapshot and query *shape* (the token stream with constants masked,
:func:`shape_of`), a :class:`Template`: the split plan with a marker where each key constant
and the region predicate go. A query of that shape is planned by :func:`rebind` (evaluate the
restrictors, choose chunks, write the markers, assign replicas) without parsing::

    SELECT * FROM Object WHERE objectId = 1003
    shape:    SELECT * FROM Object WHERE objectId = <NUMBER>
    template: worker SELECT ... WHERE <chunk filter> AND "Object"."objectId" = __QSERV_KEY_0__
    SELECT * FROM Object WHERE objectId = 2041   -> keys (2041,), no parse

Only constants the analyzer took as director keys (``key = c``/``key IN (c, ...)`` top-level
conjuncts) or as areaspec arguments vary; every other token, constants included, must be
identical; a key written as an integer must stay a plain integer (else the full path runs, as
it would take another strategy), and a region whose new arguments are invalid is planned in
full (which reports the error). A template exists only when each marker lands exactly once in
the worker SQL and nowhere in the merge, so writing a value in gives the text the full path
would produce; the restrictors are evaluated by the analyzer's own functions.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from czar.analyze.model import AnalyzedQuery, KeyRestriction, Region, Restrictor
from czar.analyze.model import Shape as RegionShape
from czar.analyze.regions import AREASPEC, Areaspec, make_shape, region_predicate
from czar.analyze.restrictors import common_keys, number
from czar.dialects.registry import DEFAULT_DIALECT, DIALECTS
from czar.plan import PlanContext, QueryPlan, place, skeleton
from czar.plan.chunks import ChunkChoice, chunk_order, layered
from czar.plan.split import split
from qserv.catalog import Partitioning
from qserv.errors import QservError

MARKER = "__QSERV_KEY_{}__"
_MARKERS = re.compile(r"__QSERV_KEY_([0-9]+|R)__")
_REGION = "R"
_CONSTANTS = frozenset({TokenType.NUMBER, TokenType.STRING})
MAX_TEMPLATE_KEYS = 256  # longer key lists get no template (see template)


@dataclass(frozen=True)
class Shape:
    """A query's tokens with constants masked (``key``) and its constant tokens in order."""

    key: tuple[object, ...]
    constants: tuple[Token, ...]


@dataclass(frozen=True)
class RegionSlots:
    """An areaspec whose arguments vary: the arguments as written and the region's kind."""

    kind: str  # the areaspec's shape kind (czar/analyze/regions.py AREASPECS)
    source: Areaspec  # its director and argument expressions as written
    constants: tuple[tuple[int, ...], ...]  # per argument, its constants' indices in order


@dataclass(frozen=True)
class Template:
    """A plan with markers for its restrictors' constants (indices into the shape's constants)."""

    skeleton: QueryPlan  # no chunks, no batches; markers in worker_template
    tables: tuple[tuple[str, str], ...]  # the chunked tables, (db, table) lower
    database: str  # of the chunked tables (its partitioning gives the chunk order)
    partitioning: Partitioning | None  # as the analyzer saw it
    family: str | None  # the query is planned on this family's placement (AnalyzedQuery.family)
    director: tuple[str, str] | None  # (database, director) keys are looked up in
    terms: tuple[tuple[int, ...], ...]  # per key conjunct, its constants' indices
    region: RegionSlots | None
    fixed: tuple[tuple[int, str], ...]  # (index, text) of every other constant


def shape_of(sql: str, dialect: str = DEFAULT_DIALECT) -> Shape | None:
    """The shape of ``sql`` as the session dialect ``dialect`` tokenizes it (None when it does
    not tokenize: the parser will say why; or for a dialect with a parser of its own, ADQL)."""
    chosen = DIALECTS.get(dialect)
    if chosen is None or chosen.sqlglot is None:
        return None
    try:
        tokens = chosen.sqlglot().tokenize(sql)
    except TokenError:
        return None
    key: list[object] = []
    constants: list[Token] = []
    for token in tokens:
        if token.token_type in _CONSTANTS:
            key.append(token.token_type)
            constants.append(token)
        elif token.token_type is TokenType.IDENTIFIER:
            # "x" and `x` tokenize alike; in PostgreSQL sessions only the first is case-sensitive
            key.append((token.token_type, token.text, sql[token.start : token.start + 1]))
        else:
            key.append((token.token_type, token.text))
    return Shape(tuple(key), tuple(constants))


def template(q: AnalyzedQuery, shape: Shape) -> Template | None:
    """The generic form of ``q``'s plan, or None when it has no constants that can vary safely."""
    if not q.chunked or (q.director_keys is None and q.region is None) or q.director_range is not None:
        return None  # (a key range is planned in full: its bounds choose the chunks)
    by_start = {token.start: i for i, token in enumerate(shape.constants)}
    terms: list[tuple[int, ...]] = []
    for term in q.director_keys.terms if q.director_keys is not None else ():
        # a constant written as-is (not -5, not a cast): its token is the key's whole text
        indices = [
            _constant_index(node, by_start) if isinstance(node, exp.Literal) else None for node in term
        ]
        if any(i is None for i in indices):
            return None
        terms.append(tuple(i for i in indices if i is not None))
    slots = {i for term in terms for i in term}
    if len(slots) > MAX_TEMPLATE_KEYS:
        # marking costs O(keys^2) in sqlglot (each replace re-parents the whole IN list): 19 s
        # for 10k keys. A shape of that many keys is rarely repeated; plan it in full each time.
        return None
    marked = q.tree.copy()
    for literal in list(marked.find_all(exp.Literal)):
        i = _constant_index(literal, by_start)
        if i is not None and i in slots:
            literal.replace(exp.var(MARKER.format(i)))
    markers = [MARKER.format(i) for i in slots]
    region: RegionSlots | None = None
    if q.region is not None:
        # one areaspec on a director only: sciSQL restrictors, several restrictors or a
        # child's grown cover are planned in full each time
        only = q.region.restrictors
        if len(only) != 1 or not only[0].areaspec or only[0].margin != 0.0:
            return None
        predicates = [n for n in marked.walk() if n.meta and isinstance(n.meta.get(AREASPEC), Areaspec)]
        if len(predicates) != 1:
            return None
        source = predicates[0].meta[AREASPEC]
        arg_constants: list[tuple[int, ...]] = []
        for arg in source.args:
            indices = [_constant_index(literal, by_start) for literal in arg.find_all(exp.Literal)]
            if any(i is None for i in indices):
                return None
            arg_constants.append(tuple(i for i in indices if i is not None))
            slots.update(arg_constants[-1])
        predicates[0].replace(exp.var(MARKER.format(_REGION)))
        markers.append(MARKER.format(_REGION))
        region = RegionSlots(source.kind, source, tuple(arg_constants))
    parts = split(dataclasses.replace(q, tree=marked))
    if any(parts.worker_template.count(m) != 1 or m in parts.merge_sql for m in markers):
        return None
    chunked = q.chunked
    return Template(
        skeleton=skeleton(q, parts, ChunkChoice("", (), ())),
        tables=tuple(sorted({ref.key for ref in chunked})),
        database=chunked[0].table.database,
        partitioning=q.partitioning,
        family=q.family,
        director=q.director_keys.director if q.director_keys is not None else None,
        terms=tuple(terms),
        region=region,
        fixed=tuple((i, t.text) for i, t in enumerate(shape.constants) if i not in slots),
    )


def _constant_index(node: exp.Expr, by_start: dict[int, int]) -> int | None:
    start = node.meta.get("start")
    return by_start.get(start) if isinstance(start, int) else None


def rebind(generic: Template, shape: Shape, ctx: PlanContext) -> QueryPlan | None:
    """The plan of a query of ``generic``'s shape, or None when it must be planned in full."""
    constants = shape.constants
    if any(constants[i].text != text for i, text in generic.fixed):
        return None
    texts: dict[str, str] = {}
    keys: KeyRestriction | None = None
    if generic.director is not None:
        values: list[list[int | str]] = []
        for term in generic.terms:
            term_keys: list[int | str] = []
            for i in term:
                token = constants[i]
                if token.token_type is TokenType.STRING:
                    term_keys.append(token.text)
                    texts[str(i)] = exp.Literal.string(token.text).sql(dialect="duckdb")
                elif token.text.isascii() and token.text.isdigit():
                    term_keys.append(int(token.text))
                    texts[str(i)] = exp.Literal.number(token.text).sql(dialect="duckdb")
                else:
                    return None  # 1.5 or 1e3 is no key: the full path plans another strategy
            values.append(term_keys)
        keys = KeyRestriction(generic.director, common_keys(values), ())
    region: Region | None = None
    if generic.region is not None:
        bound = _shape(generic.region, constants)
        if bound is None:
            return None
        director = generic.region.source.director
        region = Region((Restrictor(bound, director.alias, 0.0, areaspec=True),))
        texts[_REGION] = region_predicate(bound, director).sql(dialect="duckdb")
    order = chunk_order(generic.database, generic.partitioning, ctx)
    choice = layered(generic.tables, order, keys, region, ctx)
    worker = _MARKERS.sub(lambda m: texts.get(m.group(1), m.group(0)), generic.skeleton.worker_template)
    draft = dataclasses.replace(
        generic.skeleton,
        strategy=choice.strategy,
        reasons=choice.reasons,
        chunk_ids=choice.chunk_ids,
        worker_template=worker,
    )
    return place(draft, ctx)


def _shape(slots: RegionSlots, constants: tuple[Token, ...]) -> RegionShape | None:
    """The region the areaspec gives with this query's constants (None: invalid arguments)."""
    values: list[float] = []
    try:
        for written, indices in zip(slots.source.args, slots.constants, strict=True):
            arg = written.copy()
            for literal, i in zip(list(arg.find_all(exp.Literal)), indices, strict=True):
                literal.set("this", constants[i].text)
            value = number(arg)
            if value is None:
                return None
            values.append(value)
        return make_shape(slots.kind, values)
    except (QservError, ValueError, TypeError):
        return None
