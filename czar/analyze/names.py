"""Pass 3b (names): bind the names of ORDER BY, GROUP BY and HAVING as DuckDB does.

A bare name there may mean an input column or a select-list alias, and which one wins depends
on the clause. The rules below are DuckDB's (the reference), which agree with PostgreSQL
wherever PostgreSQL answers at all::

    clause     a bare key (the whole item)          a name inside an expression
    ORDER BY   output name (alias or bare column),   input column, else alias (PG: input only)
               else input column
    GROUP BY   input column, else alias              input column only
    HAVING     input column if it is a GROUP BY key, else alias, else input column
               (inside an aggregate's arguments: input column only)

    SELECT objectId, ra AS decl FROM Object ORDER BY decl, decl + 1
    -> ... ORDER BY 2, "Object"."decl" + 1
    SELECT flags AS ra, COUNT(*) FROM Object GROUP BY flags HAVING ra > 1
    -> ... GROUP BY "Object"."flags" HAVING "Object"."flags" > 1

A name in double quotes (PostgreSQL, ADQL) matches an alias or output name only of exactly its
spelling: a quoted alias as written, an unquoted one folded to lower case, a bare column as the
catalog spells it (PostgreSQL's rule); an unquoted name matches any case (our rule, resolve.py)::

    SELECT ra AS "Ra", decl AS d FROM Object ORDER BY "Ra", "d", RA  -> bound (three keys)
    SELECT ra AS "Ra" FROM Object ORDER BY "ra"      -> the input column ra (as PostgreSQL)
    SELECT ra AS "Ra" FROM Object ORDER BY "RA"      -> 42703 column "RA" does not exist

Every name is bound here, once: an alias reference in ORDER BY becomes the ordinal of its
projection; elsewhere it becomes a copy of the projection's expression, so later passes (the
aggregate split, the chunk planner) meet only qualified input columns and ordinals.  Positions
are checked as PostgreSQL does (``ORDER BY 0`` -> 42P10, ``ORDER BY 'x'`` -> 42601), and SELECT
DISTINCT refuses an ORDER BY item that is not in the select list (42P10), as PostgreSQL does,
because a DISTINCT row has no single value of a column it does not select.

Depends on resolve (tables resolved; select list, WHERE and ON bound by resolve_columns).
"""

from __future__ import annotations

from sqlglot import exp

from czar.analyze.model import TableRef
from czar.analyze.resolve import WRITTEN, bind_input, same_name, spelling, undefined_column
from czar.parse import node_position
from qserv.errors import AmbiguousColumn, QservError, SyntaxError_


def bind_names(tree: exp.Select, refs: tuple[TableRef, ...]) -> None:
    """Bind every column of GROUP BY, HAVING and ORDER BY in place (rules in the module doc)."""
    names = _Names(tree, refs)
    group = tree.args.get("group")
    keys: list[exp.Expr] = []
    if group is not None and group.args.get("all"):
        keys = group_all_keys(tree)
    elif group is not None:
        for key in list(group.expressions):
            bound = names.group_key(key)
            if bound is not key:
                key.replace(bound)
            keys.append(bound)
    having = tree.args.get("having")
    if having is not None:
        names.having(having, keys)
    order = tree.args.get("order")
    if order is not None:
        for item in order.expressions:
            item.set("this", names.order_key(item.this))
        if tree.args.get("distinct") is not None:
            _check_distinct(tree, order)


def group_all_keys(tree: exp.Select) -> list[exp.Expr]:
    """The keys DuckDB's ``GROUP BY ALL`` stands for: projections with columns and no aggregate."""
    keys = []
    for p in tree.expressions:
        target = _inner(p)
        if target.find(exp.AggFunc) is None and target.find(exp.Column) is not None:
            keys.append(target.copy())
    return keys


def _inner(p: exp.Expr) -> exp.Expr:
    return p.this if isinstance(p, exp.Alias) else p


def _unparen(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


class _Names:
    """The select list's aliases and the table references one query's clauses bind against."""

    def __init__(self, tree: exp.Select, refs: tuple[TableRef, ...]) -> None:
        self.tree = tree
        self.refs = refs
        self.aliases: dict[str, list[int]] = {}
        # output names: aliases and the names of bare columns (what ORDER BY binds to first)
        self.outputs: dict[str, list[int]] = {}
        # the exact spelling of each projection's name, which a quoted name must match
        self.spellings: dict[int, str] = {}
        for i, p in enumerate(tree.expressions):
            if isinstance(p, exp.Alias):
                self.spellings[i] = spelling(p.args["alias"])
                self.aliases.setdefault(p.alias.lower(), []).append(i)
                self.outputs.setdefault(p.alias.lower(), []).append(i)
            elif isinstance(p, exp.Column) and not isinstance(p.this, exp.Star):
                self.spellings[i] = p.name
                self.outputs.setdefault(p.name.lower(), []).append(i)

    def alias_index(self, col: exp.Column, clause: str, outputs: bool = False) -> int | None:
        """The projection an unqualified name is the alias (or, with ``outputs``, the output
        name) of; None: no such name. Two different projections of that name: 42702, as PG."""
        if col.table:
            return None
        indices = [
            i
            for i in (self.outputs if outputs else self.aliases).get(col.name.lower(), [])
            if same_name(col.this, self.spellings[i])
        ]
        if not indices:
            return None
        first = _inner(self.tree.expressions[indices[0]])
        if any(_inner(self.tree.expressions[i]) != first for i in indices[1:]):
            raise AmbiguousColumn(f'{clause} "{col.name}" is ambiguous', position=node_position(col))
        return indices[0]

    def projection(self, index: int, operand: bool = False) -> exp.Expr:
        """A copy of projection ``index``'s expression, to stand where its alias was written.

        As an ``operand`` of an expression it is parenthesized (``x * 2`` with ``x`` = ``a + b``).
        Its columns keep their qualified form in the as-written tree (no WRITTEN meta): there
        the alias's own name could bind to something else.
        """
        copy = _inner(self.tree.expressions[index]).copy()
        for node in copy.walk():
            if node.meta:
                node.meta.pop(WRITTEN, None)
        if not operand or isinstance(copy, exp.Column | exp.Literal | exp.Paren | exp.Func):
            return copy
        return exp.Paren(this=copy)

    def position(self, key: exp.Expr, clause: str) -> int | None:
        """The 0-based select-list index a constant key names; None when ``key`` is no constant."""
        node = _unparen(key)
        negative = isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and node.this.is_int
        if negative or (isinstance(node, exp.Literal) and node.is_int):
            value = -int(node.this.this) if negative else int(node.this)
            if not 1 <= value <= len(self.tree.expressions):
                err = QservError(
                    f"{clause} position {value} is not in select list", position=node_position(key)
                )
                err.sqlstate = "42P10"
                raise err
            return value - 1
        if isinstance(node, exp.Literal | exp.Null | exp.Boolean):
            raise SyntaxError_(f"non-integer constant in {clause}", position=node_position(key))
        return None

    def bind(self, col: exp.Column, alias_fallback: str | None) -> None:
        """Bind ``col`` to an input column; else to the alias (when allowed) or refuse."""
        if bind_input(col, self.refs):
            return
        index = self.alias_index(col, alias_fallback) if alias_fallback else None
        if index is None:
            raise undefined_column(col.name, self.refs, node_position(col))
        col.replace(self.projection(index, operand=True))

    def group_key(self, key: exp.Expr) -> exp.Expr:
        aggregate = key.find(exp.AggFunc)
        if aggregate is not None:
            raise _aggregate_in_group_by(aggregate)
        index = self.position(key, "GROUP BY")
        node = _unparen(key)
        # a key is matched structurally against the projections: without its parentheses
        if index is None and isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            if bind_input(node, self.refs):
                return node
            index = self.alias_index(node, "GROUP BY")
            if index is None:
                raise undefined_column(node.name, self.refs, node_position(node))
        if index is None:
            self._bind_all(node, alias_fallback=None)
            return node
        target = self.projection(index)
        if target.find(exp.AggFunc) is not None:
            raise _aggregate_in_group_by(_inner(self.tree.expressions[index]))
        return target

    def having(self, having: exp.Having, keys: list[exp.Expr]) -> None:
        for col in list(having.find_all(exp.Column)):
            if isinstance(col.this, exp.Star):
                continue
            if col.table or col.find_ancestor(exp.AggFunc) is not None:
                self.bind(col, alias_fallback=None)
                continue
            trial = col.copy()
            if bind_input(trial, self.refs) and any(trial == k for k in keys):
                col.replace(trial)
                continue
            index = self.alias_index(col, "HAVING")
            if index is not None:
                col.replace(self.projection(index, operand=True))
            else:
                self.bind(col, alias_fallback=None)

    def order_key(self, key: exp.Expr) -> exp.Expr:
        index = self.position(key, "ORDER BY")
        node = _unparen(key)
        if index is None and isinstance(node, exp.Column):
            index = self.alias_index(node, "ORDER BY", outputs=True)
        if index is not None:
            return exp.Literal.number(index + 1)
        self._bind_all(key, alias_fallback="ORDER BY")
        return key

    def _bind_all(self, node: exp.Expr, alias_fallback: str | None) -> None:
        for col in list(node.find_all(exp.Column)):
            if not isinstance(col.this, exp.Star):
                self.bind(col, alias_fallback)
        for aggregate in node.find_all(exp.AggFunc):
            nested = next((a for a in aggregate.find_all(exp.AggFunc) if a is not aggregate), None)
            if nested is not None:
                err = QservError("aggregate function calls cannot be nested", position=node_position(nested))
                err.sqlstate = "42803"
                raise err


def _aggregate_in_group_by(node: exp.Expr) -> QservError:
    err = QservError("aggregate functions are not allowed in GROUP BY", position=node_position(node))
    err.sqlstate = "42803"  # grouping_error, as PostgreSQL
    return err


def _check_distinct(tree: exp.Select, order: exp.Order) -> None:
    """SELECT DISTINCT: every ORDER BY item is a select-list position or expression (PG 42P10)."""
    projections = [_unparen(_inner(p)) for p in tree.expressions]
    for item in order.expressions:
        key = _unparen(item.this)
        if isinstance(key, exp.Literal) and key.is_int:
            continue
        if any(key == p for p in projections):
            continue
        err = QservError(
            "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
            position=node_position(item),
        )
        err.sqlstate = "42P10"
        raise err
