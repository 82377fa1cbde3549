"""The loader's side of the czar's HTTP API: catalog, transactions, placement, index.

A load is one transaction: ``begin`` (which may answer "already loaded"), any number of
``placement``/``stage_index``/``lookup`` calls while rows stream to workers, then ``commit``
or ``abort``. Errors come back as typed QservErrors rebuilt from the JSON ``sqlstate``.
Light to import (no partitioning, no DuckDB): every ``qserv`` command that talks to the czar
uses it.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pyarrow as pa

from qserv.catalog import Database, Partitioning, Table
from qserv.catalog_json import table_from_json, table_to_json
from qserv.errors import InvalidParameter, QservError, WorkerUnavailable, from_sqlstate
from qserv.rpc.codec import encode_ipc

ARROW_STREAM = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class Worker:
    name: str
    address: str


@dataclass(frozen=True)
class Begun:
    """Answer to ``begin``: a new transaction, or the one that already loaded this input."""

    transaction_id: int
    already_loaded: bool
    workers: tuple[Worker, ...] = ()  # active workers; a regular table's rows go to each


def _database_of(doc: dict[str, Any]) -> Database:
    return Database(
        doc["name"], Partitioning(int(doc["order"]), int(doc["sub_order"]), float(doc["overlap"]))
    )


def _ipc(table: pa.Table) -> bytes:
    return encode_ipc(table, table.schema)


class CzarClient:
    """HTTP client of the czar's ``/api/v1`` (one keep-alive connection per thread)."""

    def __init__(self, url: str, timeout: float = 600.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise InvalidParameter(
                f"bad czar URL {url!r}", hint="use http://HOST:HTTP_PORT, e.g. http://127.0.0.1:4048"
            )
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 80
        self._timeout = timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout
            )
        return conn

    def _request(
        self, verb: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> tuple[str, bytes]:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        for attempt in (0, 1):
            conn = self._conn()
            try:
                conn.request(verb, "/api/v1" + path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                conn.close()
                self._local.conn = None
                # a keep-alive connection the server closed: retry once on a fresh one
                if attempt or not isinstance(
                    e, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                ):
                    raise WorkerUnavailable(
                        f"cannot reach the czar at {self.url}: {e}", hint="is the czar running? check --url"
                    ) from e
        if resp.status >= 400:
            try:
                doc = json.loads(data)
                raise from_sqlstate(
                    doc["sqlstate"], doc["message"], detail=doc.get("detail"), hint=doc.get("hint")
                )
            except (ValueError, KeyError, TypeError):
                raise QservError(f"czar answered {resp.status}: {data[:200]!r}") from None
        return resp.getheader("Content-Type", ""), data

    def _json(self, verb: str, path: str, doc: object | None = None) -> Any:
        body = json.dumps(doc).encode() if doc is not None else b""
        return json.loads(self._request(verb, path, body)[1] or b"{}")

    def api(self, verb: str, path: str, doc: object | None = None) -> Any:
        """One JSON call of ``/api/v1`` (errors raised as typed QservErrors)."""
        return self._json(verb, path, doc)

    def _arrow(self, path: str, table: pa.Table) -> pa.Table:
        _, data = self._request("POST", path, _ipc(table), ARROW_STREAM)
        return pa.ipc.open_stream(data).read_all()

    # catalog

    def databases(self) -> list[Database]:
        """Every database, by name."""
        return [_database_of(d) for d in self._json("GET", "/databases")["databases"]]

    def database(self, name: str) -> Database | None:
        for d in self.databases():
            if d.name.lower() == name.lower():
                return d
        return None

    def create_database(self, name: str, partitioning: Partitioning | None = None) -> Database:
        """Create a database (default partitioning unless given); the same again: no-op."""
        doc: dict[str, Any] = {"name": name}
        if partitioning is not None:
            p = partitioning
            doc.update(order=p.order, sub_order=p.sub_order, overlap=p.overlap)
        return _database_of(self._json("POST", "/databases", doc))

    def table(self, database: str, name: str) -> Table | None:
        for t in self._json("GET", f"/databases/{quote(database, safe='')}/tables")["tables"]:
            if t["name"].lower() == name.lower():
                return table_from_json(t)
        return None

    def create_table(self, table: Table) -> Table:
        doc = self._json("POST", f"/databases/{quote(table.database, safe='')}/tables", table_to_json(table))
        return table_from_json(doc)

    def workers(self) -> list[Worker]:
        return [
            Worker(w["name"], w["address"])
            for w in self._json("GET", "/workers")["workers"]
            if w["state"] == "active"
        ]

    # transactions

    def begin(self, database: str, table: str, fingerprint: str) -> Begun:
        doc = self._json(
            "POST", "/transactions", {"database": database, "table": table, "fingerprint": fingerprint}
        )
        workers = tuple(Worker(w["name"], w["address"]) for w in doc.get("workers", ()))
        return Begun(int(doc["transaction_id"]), bool(doc["already_loaded"]), workers)

    def placement(self, transaction_id: int, chunk_ids: Sequence[int]) -> dict[int, tuple[Worker, ...]]:
        doc = self._json("POST", f"/transactions/{transaction_id}/placement", {"chunks": list(chunk_ids)})
        return {
            int(c): tuple(Worker(w["name"], w["address"]) for w in ws) for c, ws in doc["placement"].items()
        }

    def stage_index(self, transaction_id: int, rows: pa.Table) -> None:
        self._request("POST", f"/transactions/{transaction_id}/director-index", _ipc(rows), ARROW_STREAM)

    def lookup(self, database: str, director: str, keys: pa.Array) -> pa.Array:
        path = (
            f"/databases/{quote(database, safe='')}/tables/{quote(director, safe='')}/director-index/lookup"
        )
        return self._arrow(path, pa.table({"key": keys})).column(0).combine_chunks()

    def commit(self, transaction_id: int, chunk_rows: dict[int, int], rows: int) -> None:
        doc = {"chunk_rows": {str(c): n for c, n in chunk_rows.items()}, "rows": rows}
        self._json("POST", f"/transactions/{transaction_id}/commit", doc)

    def abort(self, transaction_id: int) -> None:
        self._json("POST", f"/transactions/{transaction_id}/abort", {})

    def transaction_state(self, transaction_id: int) -> str:
        return str(self._json("GET", f"/transactions/{transaction_id}")["state"])
