"""Pass 4 (classify): check each table reference's kind and that chunked tables share a family.

    SELECT ... FROM Object o, Filter f  -> o: director (chunked), f: regular (whole everywhere)

Match tables are refused until their de-duplicating planner exists.  Depends on resolve.
"""

from __future__ import annotations

from czar.analyze.model import TableRef
from qserv.catalog import Catalog, Partitioning, TableKind
from qserv.errors import Unsupported


def classify(refs: tuple[TableRef, ...], catalog: Catalog) -> Partitioning | None:
    """Return the partitioning of the chunked tables (None when all tables are regular)."""
    found: Partitioning | None = None
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
        if found is not None and partitioning.family != found.family:
            raise Unsupported(
                f'table "{ref.table.database}.{ref.table.name}" is partitioned differently from the '
                "other chunked tables of the query (another family): its chunks are not co-located",
                position=ref.position,
            )
        found = partitioning
    return found
