"""Checks of a table definition before the metadata store records it (one home for both backends).

A definition the planner could not use is refused here, naming the table and the option:
named columns must exist; a child's director must be a director with unique keys (a child row
names one director row); a match table's two directors must exist, be directors, and be in
the match table's family (their chunks are co-located with its chunks); its flag column an
integer column of its own (or qserv's hidden ``_flag``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from qserv.catalog import FLAG_COLUMN, Database, Table, TableKind
from qserv.errors import InvalidParameter, UndefinedTable

# (database name, table name) -> the database and table, or None when either does not exist
Lookup = Callable[[str, str], tuple[Database, Table | None] | None]

_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "UBIGINT")  # fmt: skip


def checked_table(db: Database, table: Table, lookup: Lookup) -> Table:
    """``table`` with its directors' names canonical; raises a QservError naming what is wrong."""
    where = f"{table.kind.value} table {db.name}.{table.name}"
    names = {c.name.lower() for c in table.columns}
    if len(names) != len(table.columns):
        raise InvalidParameter(f"{where} has duplicate column names", hint="rename the columns")
    needed: dict[str, str | None] = {}
    if table.kind is TableKind.DIRECTOR:
        needed = {"id": table.id_column, "lon": table.lon_column, "lat": table.lat_column}
    elif table.kind is TableKind.CHILD:
        needed = {"key": table.key_column}
        if (table.lon_column is None) != (table.lat_column is None):
            raise InvalidParameter(f"{where}: give both --lon and --lat, or neither")
        if table.lon_column is not None:
            needed.update(lon=table.lon_column, lat=table.lat_column)
    elif table.kind is TableKind.MATCH:
        needed = {"left": table.left_column, "right": table.right_column}
        if table.flag_column != FLAG_COLUMN:
            needed["flag"] = table.flag_column
    for role, col in needed.items():
        if col is None or col.lower() not in names:
            raise InvalidParameter(
                f"{where}: {role} column {col!r} is not one of its columns",
                hint=f"name an existing column as the {role} column",
            )
    if table.kind is TableKind.CHILD:
        found = lookup(db.name, table.director or "")
        director = found[1] if found is not None else None
        if director is None or director.kind is not TableKind.DIRECTOR:
            raise UndefinedTable(
                f"{where}: director table {db.name}.{table.director} does not exist",
                hint="load the director table before its children",
            )
        if director.non_unique_key:
            raise InvalidParameter(
                f"{where}: director table {db.name}.{director.name} has non-unique keys "
                "(--non-unique-key), so a child row's key does not name one director row",
                hint="load it as a director of its own, or give its director unique keys",
            )
    if table.kind is TableKind.MATCH:
        return _checked_match(db, table, where, lookup)
    return table


def _checked_match(db: Database, table: Table, where: str, lookup: Lookup) -> Table:
    sides = {}
    for side, name in (("left", table.left_director), ("right", table.right_director)):
        database, _, short = (name or "").rpartition(".")
        found = lookup(database or db.name, short)
        director = found[1] if found is not None else None
        if found is None or director is None or director.kind is not TableKind.DIRECTOR:
            raise UndefinedTable(
                f"{where}: --{side} director table {database or db.name}.{short} does not exist",
                hint="load both director tables before their match table",
            )
        other = found[0]
        if other.partitioning.family != db.partitioning.family:
            raise InvalidParameter(
                f"{where}: --{side} director {other.name}.{director.name} is in family "
                f"{other.partitioning.family}, the match table in family {db.partitioning.family}",
                hint="a match table and both its directors must be in databases of one family "
                "(the same --chunk-order, --subchunk-order and --overlap)",
            )
        if director.non_unique_key:
            raise InvalidParameter(
                f"{where}: --{side} director {other.name}.{director.name} has non-unique keys "
                "(--non-unique-key), so a match row's key does not name one director row"
            )
        sides[side] = f"{other.name}.{director.name}"
    flag = table.flag_column
    if flag == FLAG_COLUMN and table.column(FLAG_COLUMN) is not None:
        raise InvalidParameter(
            f"{where}: column name {FLAG_COLUMN} is reserved for the match flag",
            hint="rename the column, or name another integer column as the flag (--flag COL)",
        )
    if flag != FLAG_COLUMN:
        col = table.column(flag or "")
        assert col is not None  # checked above
        if col.type.upper() not in _INTEGER_TYPES:
            raise InvalidParameter(
                f"{where}: --flag column {col.name} must be an integer column, not {col.type}",
                hint="name an integer column, or leave --flag out (qserv keeps its own)",
            )
        if col.name.lower() in {(table.left_column or "").lower(), (table.right_column or "").lower()}:
            raise InvalidParameter(f"{where}: --flag column {col.name} is a key column (--left/--right)")
    return replace(table, left_director=sides["left"], right_director=sides["right"])
