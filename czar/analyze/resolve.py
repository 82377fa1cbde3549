"""Pass 3 (resolve): bind every table and column to the catalog.

    SELECT * FROM object o WHERE RA > 1
    -> SELECT "o"."objectId", "o"."ra", ... FROM "db"."Object" AS "o" WHERE "o"."ra" > 1

Tables become ``"db"."Table" AS "alias"`` (the alias defaults to the name as written), columns
are qualified by alias and spelled as in the catalog, ``*``/``t.*`` expand to the user columns.
The hidden ``_chunk``/``_subchunk`` columns are never expanded and refused when named.

An unquoted name matches case-insensitively (our deviation from PostgreSQL, which folds it to
lower case: the catalog keeps names as loaded, ``Object``, ``objectId``); a name in double
quotes in a PostgreSQL or ADQL session (marked by czar/parse.py) matches only its exact
spelling, as PostgreSQL and ADQL 2.1 (§2.1.3) do:

    SELECT "objectId" FROM "Object"    -> bound
    SELECT "OBJECTID" FROM Object      -> 42703 column "OBJECTID" does not exist
    SELECT ra FROM "object"            -> 42P01 relation "sky.object" does not exist

A quoted qualifier matches an alias's spelling (:attr:`TableRef.spelling`).
Names in ORDER BY/GROUP BY/HAVING, which may be select-list aliases, are bound by names.py.
Depends on guard and shape (a single SELECT, no sub-queries).
"""

from __future__ import annotations

from sqlglot import exp

from czar.analyze.model import TableRef
from czar.analyze.using import hidden_by_using, merge_using, visible_columns
from czar.parse import is_exact, node_position
from qserv.catalog import CHUNK_COLUMN, SUBCHUNK_COLUMN, Catalog, Column, Table
from qserv.errors import AmbiguousColumn, QservError, UndefinedColumn, UndefinedTable, Unsupported

HIDDEN_COLUMNS = frozenset({CHUNK_COLUMN, SUBCHUNK_COLUMN})


def from_tables(tree: exp.Select) -> list[tuple[exp.Table, exp.Join | None]]:
    """The FROM table and each JOIN's table, in order, with the join that brings it."""
    out: list[tuple[exp.Table, exp.Join | None]] = []
    from_ = tree.args.get("from_")
    if from_ is not None:
        if not isinstance(from_.this, exp.Table):
            raise Unsupported("FROM must name catalog tables", position=node_position(from_))
        out.append((from_.this, None))
    for join in tree.args.get("joins") or []:
        if not isinstance(join.this, exp.Table):
            raise Unsupported("JOIN must name catalog tables", position=node_position(join))
        out.append((join.this, join))
    return out


def _quoted(name: str, like: exp.Expr | None = None) -> exp.Identifier:
    ident = exp.Identifier(this=name, quoted=True)
    if like is not None and like.meta:
        ident.meta.update(like.meta)
    return ident


def resolve_tables(tree: exp.Select, catalog: Catalog, default_db: str) -> tuple[TableRef, ...]:
    """Replace each table by its catalog spelling with an explicit alias; return the refs."""
    refs: list[TableRef] = []
    for node, join in from_tables(tree):
        position = node_position(node)
        db_name = node.db or default_db
        table = catalog.table(db_name, node.name)
        if table is None or not (
            same_name(node.args.get("db"), table.database) and same_name(node.this, table.name)
        ):
            raise _undefined_table(catalog, db_name, node.name, position)
        alias = node.alias or node.name
        alias_ident = node.args["alias"].this if node.alias else None
        exact = table.name if alias_ident is None else spelling(alias_ident)
        if any(r.alias.lower() == alias.lower() for r in refs):
            err = QservError(
                f'table name "{alias}" specified more than once: give each reference its own alias',
                position=position,
            )
            err.sqlstate = "42712"
            raise err
        outer = False
        if join is not None:
            side = (join.side or "").upper()
            if side in ("RIGHT", "FULL"):
                raise Unsupported(
                    f"{side} JOIN is not supported yet: write it as a LEFT JOIN",
                    position=node_position(join),
                )
            outer = side == "LEFT"
        node.replace(
            exp.Table(
                this=_quoted(table.name),
                db=_quoted(table.database),
                alias=exp.TableAlias(this=_quoted(alias)),
            )
        )
        refs.append(TableRef(alias=alias, table=table, position=position, outer=outer, spelling=exact))
    return merge_using(tree, tuple(refs))


def same_name(written: exp.Expr | None, defined: str) -> bool:
    """Whether the identifier ``written`` (absent: a default, which matches) names ``defined``,
    a name it already matches case-insensitively: a delimited identifier only when spelled
    exactly so (module doc)."""
    return not is_exact(written) or (isinstance(written, exp.Identifier) and written.this == defined)


def spelling(ident: exp.Identifier) -> str:
    """The name an alias defines: as written when quoted, else folded to lower case (PG)."""
    return ident.this if is_exact(ident) else ident.this.lower()


def _undefined_table(catalog: Catalog, db: str, name: str, position: int | None) -> QservError:
    if catalog.database(db) is None:
        known = ", ".join(sorted(d.name for d in catalog.databases)) or "none"
        return UndefinedTable(
            f'relation "{db}.{name}" does not exist: no database "{db}" (databases: {known})',
            position=position,
        )
    names = ", ".join(sorted(t.name for t in catalog.tables_of(db))) or "none"
    near = catalog.table(db, name)
    return UndefinedTable(
        f'relation "{db}.{name}" does not exist (tables in {db}: {names})',
        position=position,
        hint=_CASE_HINT.format(f'"{near.database}"."{near.name}"') if near is not None else None,
    )


# a quoted name that matches only case-insensitively (PostgreSQL gives no hint for a relation)
_CASE_HINT = "Names in double quotes are case-sensitive: it is spelled {}."


def expand_stars(tree: exp.Select, refs: tuple[TableRef, ...]) -> None:
    """``*`` -> every user column of every table; ``t.*`` -> those of ``t``."""
    projections: list[exp.Expr] = []
    for p in tree.expressions:
        if isinstance(p, exp.Star):
            if p.args.get("except_") or p.args.get("replace") or p.args.get("rename"):
                raise Unsupported("* EXCLUDE/REPLACE is not supported", position=node_position(p))
            if not refs:
                raise Unsupported("SELECT * needs a FROM clause", position=node_position(p))
            projections.extend(
                exp.Column(this=_quoted(name), table=_quoted(alias)) for name, alias in visible_columns(refs)
            )
        elif isinstance(p, exp.Column) and isinstance(p.this, exp.Star):
            ref = _find_ref(refs, p.args["table"], node_position(p))
            projections.extend(_columns_of(ref))
        else:
            projections.append(p)
    tree.set("expressions", projections)


def _columns_of(ref: TableRef) -> list[exp.Expr]:
    return [
        exp.Column(this=_quoted(c.name), table=_quoted(ref.alias))
        for c in ref.table.columns
        if c.name.lower() not in HIDDEN_COLUMNS
    ]


def _find_ref(refs: tuple[TableRef, ...], qualifier: exp.Identifier, position: int | None) -> TableRef:
    alias = qualifier.name
    for ref in refs:
        if ref.alias.lower() == alias.lower() and same_name(qualifier, ref.spelling or ref.alias):
            return ref
    for ref in refs:  # Table.col where the table has another alias: hidden by it, as in PG
        if ref.table.name.lower() == alias.lower() and same_name(qualifier, ref.table.name):
            raise UndefinedTable(
                f'invalid reference to FROM-clause entry for table "{alias}"',
                hint=f'Perhaps you meant to reference the table alias "{ref.alias}".',
                position=position,
            )
    raise UndefinedTable(
        f'missing FROM-clause entry for table "{alias}"',
        position=position,
    )


def resolve_columns(tree: exp.Select, refs: tuple[TableRef, ...]) -> None:
    """Qualify every column by its table alias and spell it as the catalog does.

    Columns of ORDER BY, GROUP BY and HAVING, where a name may be a select-list alias, are
    left to the names pass (names.py), which binds them with :func:`bind_input`.
    """
    for col in list(tree.find_all(exp.Column)):
        if isinstance(col.this, exp.Star) or col.find_ancestor(exp.Order, exp.Group, exp.Having):
            continue  # COUNT(t.*) style is left to DuckDB
        if not bind_input(col, refs):
            raise undefined_column(col.name, refs, node_position(col))


def bind_input(col: exp.Column, refs: tuple[TableRef, ...]) -> bool:
    """Bind ``col`` to the input column it names; False when no table has an unqualified name.

    Raises for a hidden column, an unknown qualifier or column of a named table, and a name
    several tables have.
    """
    name = col.name
    position = node_position(col)
    if name.lower() in HIDDEN_COLUMNS:
        raise UndefinedColumn(
            f'column "{name}" is internal to qserv and cannot be queried',
            position=position,
        )
    if col.table:
        _bind(col, _find_ref(refs, col.args["table"], position), position)
        return True
    owners = [r for r in refs if _column(r.table, col.this) is not None and not hidden_by_using(r, name)]
    if len(owners) > 1:
        tables = ", ".join(r.alias for r in owners)
        raise AmbiguousColumn(
            f'column reference "{name}" is ambiguous (in {tables}): qualify it with a table alias',
            position=position,
        )
    if not owners:
        return False
    _bind(col, owners[0], position)
    return True


WRITTEN = "qserv_written"  # meta key: the column as the user wrote it (for result names)


def as_written(tree: exp.Select) -> exp.Select:
    """A copy of ``tree`` with columns spelled as the user wrote them (qualified only if they were).

    DuckDB names unaliased expressions from their text (``avg(psfFlux)``, not ``avg(s.psfFlux)``),
    so result names and the reference query come from this form.  Resolution already proved
    every unqualified name unambiguous.
    """
    out = tree.copy()
    for col in list(out.find_all(exp.Column)):
        written = col.meta.get(WRITTEN)
        if isinstance(written, exp.Column):
            col.replace(written.copy())
    return out


def _column(table: Table, ident: exp.Expr) -> Column | None:
    """The column of ``table`` the identifier ``ident`` names (exactly, when quoted)."""
    column = table.column(ident.name)
    return column if column is not None and same_name(ident, column.name) else None


def _bind(col: exp.Column, ref: TableRef, position: int | None) -> None:
    column = _column(ref.table, col.this)
    if column is None:
        raise undefined_column(col.name, (ref,), position)
    written = exp.Column(this=col.this.copy())
    if col.table:
        written.set("table", _quoted(ref.alias))
    col.meta[WRITTEN] = written
    col.set("this", _quoted(column.name, col.this))
    col.set("table", _quoted(ref.alias, col.args.get("table")))
    col.set("db", None)
    col.set("catalog", None)


def undefined_column(name: str, refs: tuple[TableRef, ...], position: int | None) -> QservError:
    if not refs:
        return UndefinedColumn(f'column "{name}" does not exist (no FROM clause)', position=position)
    known = "; ".join(f"{r.alias}: {_user_columns(r.table)}" for r in refs)
    near = next((f'"{r.alias}"."{c.name}"' for r in refs if (c := r.table.column(name)) is not None), None)
    return UndefinedColumn(
        f'column "{name}" does not exist (columns: {known})',
        position=position,
        hint=_CASE_HINT.format(near) if near is not None else None,
    )


def _user_columns(table: Table) -> str:
    return ", ".join(c.name for c in table.columns if c.name.lower() not in HIDDEN_COLUMNS)
