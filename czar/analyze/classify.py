"""Pass 4 (classify): check each table reference's kind and that chunked tables share a family.

    SELECT ... FROM Object o, Filter f  -> o: director (chunked), f: regular (whole everywhere)

The family of the chunked tables is the one the query is planned on (its chunk placement),
whatever database the other (regular) tables are in; a query of regular tables only has none.
Chunked tables of two families are refused: their chunks are not co-located.

Match tables are refused until their de-duplicating planner exists.  Depends on resolve.
"""

from __future__ import annotations

from czar.analyze.model import TableRef
from qserv.catalog import Catalog, Partitioning, TableKind
from qserv.errors import Unsupported


def classify(refs: tuple[TableRef, ...], catalog: Catalog) -> Partitioning | None:
    """Return the partitioning of the chunked tables (None when all tables are regular)."""
    found: Partitioning | None = None
    first: TableRef | None = None
    for ref in refs:
        if ref.kind is TableKind.MATCH:
            raise Unsupported(
                f'match table "{ref.table.name}" is not supported yet: join the directors by key',
                position=ref.position,
            )
        if not ref.table.is_chunked:
            continue
        db = catalog.database(ref.table.database)
        partitioning = db.partitioning if db is not None else Partitioning()
        if found is None or first is None:
            found, first = partitioning, ref
        elif partitioning.family != found.family:
            raise Unsupported(
                f'cannot join partitioned tables of different families: "{first.table.database}.'
                f'{first.table.name}" is in family {found.family}, "{ref.table.database}.'
                f'{ref.table.name}" in family {partitioning.family}; their chunks are not co-located',
                position=ref.position,
            )
    return found
