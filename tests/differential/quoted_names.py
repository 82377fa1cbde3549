"""The test's own rule for names in double quotes (PostgreSQL and ADQL sessions), for the reference.

DuckDB matches every name case-insensitively, quoted or not, so the reference DuckDB cannot
say what PostgreSQL refuses; this module does, written from the rule (README "Identifiers"),
not from the czar's resolver:

- an unquoted name matches any case (the project's deviation from PostgreSQL's folding);
- a name in double quotes matches only exactly its spelling: a database or table as loaded,
  a column as the catalog spells it, a table alias as written when quoted and in lower case
  when not (PostgreSQL folds it), a table without alias by its catalog name; in ORDER BY,
  GROUP BY and HAVING also a select-list alias (same folding) or a bare column's name.

A table name that is a CTE of the query, and any SELECT reading something other than catalog
tables (a CTE, a derived table), are not checked: their names are the sub-query's.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from qserv.catalog import Table

UNDEFINED_TABLE = "42P01"
UNDEFINED_COLUMN = "42703"


def quoted_refusal(
    tree: exp.Expr, sql: str, tables: Sequence[Table], default_db: str
) -> tuple[str, str] | None:
    """(SQLSTATE, message) PostgreSQL gives for a quoted name of ``tree`` that matches only in
    another case; None when every quoted name is spelled exactly (or there is none)."""
    ctes = {c.alias.lower() for c in tree.find_all(exp.CTE)}
    for node in tree.find_all(exp.Table):
        if not node.name or node.name.lower() in ctes and not node.db:
            continue
        db = node.db or default_db
        found = [
            t for t in tables if t.database.lower() == db.lower() and t.name.lower() == node.name.lower()
        ]
        if not found:
            continue  # DuckDB refuses it too
        if not _matches(node.args.get("db"), found[0].database, sql) or not _matches(
            node.this, found[0].name, sql
        ):
            return UNDEFINED_TABLE, f'relation "{node.name}" does not exist'
    for select in tree.find_all(exp.Select):
        refusal = _check_select(select, sql, tables, default_db, ctes)
        if refusal is not None:
            return refusal
    return None


def _delimited(ident: exp.Expr | None, sql: str) -> bool:
    """Written in double quotes (backticks keep MySQL's case-insensitive meaning)."""
    if not isinstance(ident, exp.Identifier) or not ident.quoted:
        return False
    start = ident.meta.get("start")
    return isinstance(start, int) and sql[start : start + 1] == '"'


def _matches(ident: exp.Expr | None, spelling: str, sql: str) -> bool:
    if ident is None:
        return True
    name = ident.name
    return name == spelling if _delimited(ident, sql) else name.lower() == spelling.lower()


def _defined(ident: exp.Identifier, sql: str) -> str:
    """The name an alias defines: as written in double quotes, else in lower case."""
    return ident.name if _delimited(ident, sql) else ident.name.lower()


def _check_select(
    select: exp.Select, sql: str, tables: Sequence[Table], default_db: str, ctes: set[str]
) -> tuple[str, str] | None:
    sources: list[tuple[str, Table]] = []  # (alias spelling, table)
    for source in [select.args.get("from_"), *(select.args.get("joins") or [])]:
        node = source.this if source is not None else None
        if not isinstance(node, exp.Table) or (node.name.lower() in ctes and not node.db):
            return None
        db = node.db or default_db
        table = next(
            (t for t in tables if t.database.lower() == db.lower() and t.name.lower() == node.name.lower()),
            None,
        )
        if table is None:
            return None
        alias = node.args.get("alias")
        sources.append((table.name if alias is None else _defined(alias.this, sql), table))
    outputs: list[str] = []
    for item in select.expressions:
        if isinstance(item, exp.Alias):
            outputs.append(_defined(item.args["alias"], sql))
        elif isinstance(item, exp.Column) and not item.is_star:
            outputs.extend(
                c.name for _, t in sources for c in t.columns if c.name.lower() == item.name.lower()
            )
    for col in select.find_all(exp.Column):
        if col.find_ancestor(exp.Select) is not select or isinstance(col.this, exp.Star):
            continue
        candidates = sources
        if col.table:
            candidates = [s for s in sources if s[0].lower() == col.table.lower()]
            if not any(_matches(col.args["table"], s[0], sql) for s in candidates):
                if candidates:
                    return UNDEFINED_TABLE, f'missing FROM-clause entry for table "{col.table}"'
                continue  # DuckDB refuses it too
        if not _delimited(col.this, sql):
            continue
        names = [c.name for _, t in candidates for c in t.columns]
        if not col.table and col.find_ancestor(exp.Order, exp.Group, exp.Having) is not None:
            names += outputs
        if col.name not in names and col.name.lower() in {n.lower() for n in names}:
            return UNDEFINED_COLUMN, f'column "{col.name}" does not exist'
    return None
