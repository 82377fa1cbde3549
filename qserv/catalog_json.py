"""JSON forms of the catalog, as the czar's HTTP API sends them and the loader reads them."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from qserv.catalog import Column, Database, Table, TableKind
from qserv.errors import InvalidParameter


def table_to_json(table: Table) -> dict[str, Any]:
    """A table definition as the HTTP API sends it."""
    doc = asdict(table)
    doc["kind"] = table.kind.value
    doc["columns"] = [{"name": c.name, "type": c.type} for c in table.columns]
    return doc


def table_from_json(doc: dict[str, Any]) -> Table:
    """Inverse of :func:`table_to_json` (raises InvalidParameter on a malformed body)."""
    try:
        return Table(
            database=str(doc["database"]),
            name=str(doc["name"]),
            kind=TableKind(doc["kind"]),
            columns=tuple(Column(str(c["name"]), str(c["type"])) for c in doc["columns"]),
            id_column=doc.get("id_column"),
            lon_column=doc.get("lon_column"),
            lat_column=doc.get("lat_column"),
            director=doc.get("director"),
            key_column=doc.get("key_column"),
            non_unique_key=bool(doc.get("non_unique_key", False)),
            left_director=doc.get("left_director"),
            left_column=doc.get("left_column"),
            right_director=doc.get("right_director"),
            right_column=doc.get("right_column"),
            flag_column=doc.get("flag_column"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidParameter(f"malformed table definition: {e!r}") from e


def database_to_json(db: Database) -> dict[str, Any]:
    p = db.partitioning
    return {
        "name": db.name,
        "order": p.order,
        "sub_order": p.sub_order,
        "overlap": p.overlap,
        "family": p.family,
    }
