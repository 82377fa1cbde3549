"""Pass 4 (classify): check each table reference's kind and that chunked tables share a family.

    SELECT ... FROM Object o, Filter f  -> o: director (chunked), f: regular (whole everywhere)

The family of the chunked tables is the one the query is planned on (its chunk placement),
whatever database the other (regular) tables are in; a query of regular tables only has none.
Chunked tables of two families are refused: their chunks are not co-located.

Depends on resolve.
"""

from __future__ import annotations

from czar.analyze.model import TableRef
from qserv.catalog import Catalog, Partitioning
from qserv.errors import Unsupported


def classify(refs: tuple[TableRef, ...], catalog: Catalog) -> Partitioning | None:
    """Return the partitioning of the chunked tables (None when all tables are regular)."""
    first: tuple[TableRef, Partitioning] | None = None  # the first chunked table and its partitioning
    for ref in refs:
        if not ref.table.is_chunked:
            continue
        db = catalog.database(ref.table.database)
        partitioning = db.partitioning if db is not None else Partitioning()
        if first is None:
            first = (ref, partitioning)
        elif partitioning.family != first[1].family:
            other = first[0].table
            raise Unsupported(
                f'cannot join partitioned tables of different families: "{other.database}.{other.name}" '
                f'is in family {first[1].family}, "{ref.table.database}.{ref.table.name}" in family '
                f"{partitioning.family}; their chunks are not co-located",
                position=ref.position,
            )
    return first[1] if first is not None else None
