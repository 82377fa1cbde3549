"""Running a :class:`~czar.analyze.subqueries.Program`: each step's result written into the next.

A step's rows become a value for the queries that use it (:func:`value_of`, pure), written in
where its placeholder stands (:func:`bind`, pure)::

    scalar  (SELECT MAX(rMag) FROM Object)        -> CAST(24.5 AS DOUBLE); no row: CAST(NULL ...)
    in      x IN (SELECT objectId FROM ...)       -> x IN (1003, 1017); no row: FALSE
    exists  EXISTS (SELECT ... LIMIT 1)           -> TRUE / FALSE
    table   FROM (SELECT ...) AS t, WITH t AS ... -> the rows, a table of the czar's DuckDB

:func:`execute` conducts the steps through two runners the caller supplies (the pipeline's
distributed path and the merge DuckDB; the test harness's fakes), as dispatch takes a
BatchExecutor. IN lists and tables are bounded: a larger result is refused, naming the bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeAlias

import pyarrow as pa
from sqlglot import exp

from czar.analyze.subqueries import Program, Step, Use
from czar.plan.constants import literal
from czar.plan.shipped import Shipped
from qserv.errors import CardinalityViolation, StatementTooComplex, SyntaxError_

MAX_IN_ROWS = 100_000
"""Most distinct values an ``IN (SELECT ...)`` sub-query may give (they become an IN list)."""
MAX_TABLE_ROWS = 5_000_000
"""Most rows a derived table or CTE may have (they are held in the czar's memory)."""

Value: TypeAlias = exp.Expr | tuple[exp.Expr, ...] | pa.Table
# (table, DuckDB type of each column)
Answer: TypeAlias = tuple[pa.Table, tuple[str, ...]]


def _list_item(value: object, type_: str) -> exp.Expr:
    """An IN-list constant: plain integers and strings (so director keys are recognised)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return exp.Literal.number(value) if value >= 0 else exp.Neg(this=exp.Literal.number(-value))
    if isinstance(value, str):
        return exp.Literal.string(value)
    return literal(value, type_)


def _one_column(step: Step, table: pa.Table) -> None:
    if table.num_columns != 1:
        raise SyntaxError_(
            "subquery must return only one column"
            if step.use is Use.SCALAR
            else "subquery has too many columns",
            position=step.position,
        )


def value_of(step: Step, table: pa.Table, types: Sequence[str]) -> Value:
    """What the result of ``step`` stands for in the queries that use it."""
    if step.use is Use.EXISTS:
        return exp.Boolean(this=table.num_rows > 0)
    if step.use is Use.TABLE:
        if table.num_rows > MAX_TABLE_ROWS:
            raise StatementTooComplex(
                f"sub-query result too large: a derived table or CTE has {table.num_rows} rows, "
                f"above the bound of {MAX_TABLE_ROWS}",
                hint="restrict the sub-query (WHERE, GROUP BY) or join the catalog tables directly",
                position=step.position,
            )
        return table
    _one_column(step, table)
    if step.use is Use.SCALAR:
        if table.num_rows > 1:
            raise CardinalityViolation(
                "more than one row returned by a subquery used as an expression", position=step.position
            )
        return literal(table.column(0)[0].as_py() if table.num_rows else None, types[0])
    values = list(dict.fromkeys(table.column(0).to_pylist()))
    if len(values) > MAX_IN_ROWS:
        raise StatementTooComplex(
            f"sub-query result too large: IN (SELECT ...) gives {len(values)} distinct values, "
            f"above the bound of {MAX_IN_ROWS}",
            hint="restrict the sub-query, or join the tables directly",
            position=step.position,
        )
    return tuple(_list_item(v, types[0]) for v in values)


def bind(query: exp.Select, values: Mapping[str, Value]) -> exp.Select:
    """``query`` with the values of earlier steps where their placeholders stand."""
    out = query.copy()
    for node in list(out.find_all(exp.Placeholder)):
        value = values.get(str(node.this))
        if value is None or isinstance(value, pa.Table):
            continue
        parent = node.parent
        if isinstance(parent, exp.In) and parent.args.get("query") is node:
            assert isinstance(value, tuple)
            if not value:  # x IN (no rows) is FALSE, even for a NULL x
                parent.replace(exp.false())
            else:
                parent.set("query", None)
                parent.set("expressions", [v.copy() for v in value])
        else:
            assert isinstance(value, exp.Expr)
            node.replace(value.copy())
    return out


async def execute(
    program: Program,
    distributed: Callable[[exp.Select, Shipped], Awaitable[Answer]],
    local: Callable[[exp.Select, Mapping[str, pa.Table]], Awaitable[Answer]],
) -> Answer:
    """Run the steps in order, then the final query; the final query's answer.

    A distributed step reading earlier TABLE steps (joined with catalog tables) gets their
    rows and types, to send to the workers (czar/plan/shipped.py).
    """
    values: dict[str, Value] = {}
    tables: dict[str, Answer] = {}
    for step in (*program.steps, program.final):
        query = bind(step.query, values)
        if step.local:
            table, types = await local(query, {name: t for name, (t, _) in tables.items()})
        else:
            read = {t.name for t in query.find_all(exp.Table)}
            table, types = await distributed(query, {n: a for n, a in tables.items() if n in read})
        if step is program.final:
            return table, types
        value = value_of(step, table, types)
        values[step.name] = value
        if isinstance(value, pa.Table):
            tables[step.name] = (value, types)
    raise AssertionError("unreachable: the final step returns")
