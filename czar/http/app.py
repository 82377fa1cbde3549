"""The czar's HTTP API: admin and ingest endpoints under ``/api/v1``.

A stdlib ``ThreadingHTTPServer`` run in a thread of the czar process (the caller starts
``serve_forever``). Bodies are JSON, except where row data flows: director index staging and
lookups carry Arrow IPC streams (``Content-Type: application/vnd.apache.arrow.stream``).
Errors are JSON ``{"sqlstate", "message", "detail", "hint"}`` with a 4xx/5xx status.
A body longer than ``max_body_bytes`` is answered 413 and a bad Content-Length 400, both
unread and with the connection closed (its framing cannot be trusted).

=====  ==================================================  =========================================
verb   path                                                 body -> answer
=====  ==================================================  =========================================
GET    /api/v1/databases                                    -> {databases: [...]}
POST   /api/v1/databases                                    {name, order?, sub_order?, overlap?}
GET    /api/v1/databases/{db}/tables                        -> {tables: [...]}
POST   /api/v1/databases/{db}/tables                        table definition (created on workers)
GET    /api/v1/workers                                      -> {workers: [...]}
POST   /api/v1/transactions                                 {database, table, fingerprint}
                                                            -> {transaction_id, already_loaded, ...}
GET    /api/v1/transactions/{id}                            -> transaction
POST   /api/v1/transactions/{id}/placement                  {chunks: [...]} -> {placement: {chunk: [worker]}}
POST   /api/v1/transactions/{id}/director-index             Arrow (key, chunk, subchunk)
POST   /api/v1/databases/{db}/tables/{t}/director-index/lookup   Arrow (key) -> Arrow (chunk)
POST   /api/v1/transactions/{id}/commit                     {chunk_rows: {chunk: rows}, rows}
POST   /api/v1/transactions/{id}/abort
GET    /api/v1/replica/status                               -> {replication_level, chunks, lost, workers, ...}
GET    /api/v1/replica/workers                              -> {workers: [...]}
POST   /api/v1/replica/workers                              {name, address} (add or bring back a worker)
POST   /api/v1/replica/workers/{name}/evict                 {force?}
GET    /api/v1/replica/chunks?family=F&standing=S           -> {chunks: [...]}
GET    /api/v1/replica/level                                -> {replication_level}
POST   /api/v1/replica/level                                {level}
POST   /api/v1/replica/{replicate|rebalance|purge|verify}   -> {request}
=====  ==================================================  =========================================
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

import pyarrow as pa

from czar.director_index import DirectorIndex
from czar.http.ingest import Ingest
from czar.http.replica_admin import ReplicaAdmin
from qserv.catalog_json import table_from_json
from qserv.errors import InternalError, InvalidParameter, QservError
from qserv.metadata.store import MetadataStore
from qserv.rpc.codec import decode_ipc, encode_ipc
from qserv.sqlerrors import scrub

_log = logging.getLogger(__name__)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_BODY_BYTES = 128 << 20  # the default of CzarConfig.max_http_body_bytes


@dataclass(frozen=True)
class Request:
    """A decoded request: path parameters and the raw body."""

    params: tuple[str, ...]
    body: bytes
    content_type: str
    query: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            doc = json.loads(self.body)
        except ValueError as e:
            raise InvalidParameter(f"request body is not JSON: {e}") from e
        if not isinstance(doc, dict):
            raise InvalidParameter("request body must be a JSON object")
        return doc

    def arrow(self) -> pa.Table:
        try:
            return decode_ipc(self.body)
        except (pa.ArrowInvalid, OSError) as e:
            raise InvalidParameter(f"request body is not an Arrow IPC stream: {e}") from e


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


def json_response(doc: object, status: int = 200) -> Response:
    return Response(status, json.dumps(doc).encode())


def arrow_response(table: pa.Table) -> Response:
    return Response(200, encode_ipc(table, table.schema), ARROW_STREAM)


def error_status(err: QservError) -> int:
    """HTTP status of a typed error."""
    s = err.sqlstate
    if s in ("42P01", "3D000", "42704"):
        return 404
    if s == "42710":
        return 409
    if s.startswith("08"):
        return 503
    if s.startswith("XX"):
        return 500
    return 400


Handler = Callable[[Request], Response]


def routes(ingest: Ingest, admin: ReplicaAdmin) -> list[tuple[str, re.Pattern[str], Handler]]:
    """The endpoint table: (verb, path pattern, handler)."""

    def txn(r: Request) -> int:
        return int(r.params[0])

    def commit(r: Request) -> Response:
        doc = r.json()
        chunk_rows = {int(k): int(v) for k, v in (doc.get("chunk_rows") or {}).items()}
        return json_response(ingest.commit(txn(r), chunk_rows, int(doc.get("rows", 0))))

    def lookup(r: Request) -> Response:
        keys = r.arrow()
        if keys.num_columns != 1:
            raise InvalidParameter("lookup body must have one column of keys")
        chunks = ingest.lookup(r.params[0], r.params[1], keys.column(0).combine_chunks())
        return arrow_response(pa.table({"chunk": chunks}))

    def begin(r: Request) -> Response:
        doc = r.json()
        try:
            return json_response(
                ingest.begin(str(doc["database"]), str(doc["table"]), str(doc["fingerprint"]))
            )
        except KeyError as e:
            raise InvalidParameter(f"begin needs database, table and fingerprint; missing {e}") from e

    def placement(r: Request) -> Response:
        chunks = [int(c) for c in r.json().get("chunks", [])]
        placed = ingest.placement(txn(r), chunks)
        return json_response({"placement": {str(c): w for c, w in placed.items()}})

    def stage(r: Request) -> Response:
        ingest.stage_index(txn(r), r.arrow())
        return json_response({})

    def create_table(r: Request) -> Response:
        doc = {**r.json(), "database": r.params[0]}
        return json_response(ingest.create_table(table_from_json(doc)))

    ident = r"([^/]+)"
    number = r"(\d+)"
    table: list[tuple[str, str, Handler]] = [
        ("GET", "/databases", lambda r: json_response({"databases": ingest.databases()})),
        ("POST", "/databases", lambda r: json_response(ingest.create_database(r.json()))),
        (
            "GET",
            f"/databases/{ident}/tables",
            lambda r: json_response({"tables": ingest.tables(r.params[0])}),
        ),
        ("POST", f"/databases/{ident}/tables", create_table),
        ("POST", f"/databases/{ident}/tables/{ident}/director-index/lookup", lookup),
        ("GET", "/workers", lambda r: json_response({"workers": ingest.workers()})),
        ("POST", "/transactions", begin),
        ("GET", f"/transactions/{number}", lambda r: json_response(ingest.get_transaction(txn(r)))),
        ("POST", f"/transactions/{number}/placement", placement),
        ("POST", f"/transactions/{number}/director-index", stage),
        ("POST", f"/transactions/{number}/commit", commit),
        ("POST", f"/transactions/{number}/abort", lambda r: json_response(ingest.abort(txn(r)))),
        *replica_routes(admin),
    ]
    return [(verb, re.compile(f"/api/v1{path}"), h) for verb, path, h in table]


def replica_routes(admin: ReplicaAdmin) -> list[tuple[str, str, Handler]]:
    """The replication admin endpoints (served by :class:`ReplicaAdmin`)."""

    def chunks(r: Request) -> Response:
        return json_response({"chunks": admin.chunks(r.query.get("family"), r.query.get("standing"))})

    def evict(r: Request) -> Response:
        return json_response(admin.evict(r.params[0], bool(r.json().get("force", False))))

    def add_worker(r: Request) -> Response:
        doc = r.json()
        return json_response(admin.add_worker(doc.get("name"), doc.get("address")))

    def action(name: str) -> Handler:
        return lambda r: json_response(admin.request(name))

    return [
        ("GET", "/replica/status", lambda r: json_response(admin.status())),
        ("GET", "/replica/workers", lambda r: json_response({"workers": admin.workers()})),
        ("POST", "/replica/workers", add_worker),
        ("POST", "/replica/workers/([^/]+)/evict", evict),
        ("GET", "/replica/chunks", chunks),
        ("GET", "/replica/level", lambda r: json_response({"replication_level": admin.level()})),
        ("POST", "/replica/level", lambda r: json_response(admin.set_level(r.json().get("level")))),
        *[
            ("POST", f"/replica/{name}", action(name))
            for name in ("replicate", "rebalance", "purge", "verify")
        ],
    ]


def body_length(header: str | None, limit: int) -> int | Response:
    """The body length a Content-Length header announces, or the refusal to send unread."""
    if header is None or not header.strip():
        return 0
    text = header.strip()
    if not text.isdigit() or len(text) > 20:  # no sign, no blanks inside, no 1000-digit number
        doc = {"sqlstate": "22023", "message": f"invalid Content-Length {text[:40]!r}"}
        return json_response(doc, status=400)
    length = int(text)
    if length > limit:
        doc = {
            "sqlstate": "54000",
            "message": f"request body of {length} bytes is larger than the limit of {limit} bytes",
            "hint": "raise czar.max_http_body_bytes, or send smaller batches (qserv load --batch-rows)",
        }
        return json_response(doc, status=413)
    return length


def make_handler(
    ingest: Ingest, admin: ReplicaAdmin, max_body_bytes: int = MAX_BODY_BYTES
) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``ingest`` and ``admin`` (no global state)."""
    table = routes(ingest, admin)

    class ApiHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the loader sends many small requests
        server_version = "qserv-czar"

        def log_message(self, format: str, *args: Any) -> None:
            _log.debug("%s " + format, self.address_string(), *args)

        def _dispatch(self, verb: str) -> None:
            path, _, query = self.path.partition("?")
            length = body_length(self.headers.get("Content-Length"), max_body_bytes)
            if isinstance(length, Response):
                self.close_connection = True  # the unread body would be taken for a request
                self._send(length)
                return
            body = self.rfile.read(length) if length else b""
            try:
                response = self._route(verb, path, query, body)
            except QservError as e:
                response = self._error(e)
            except Exception as e:  # clients never see a stack trace
                err = InternalError(f"{verb} {path} failed")
                _log.exception("incident %s: %s", err.incident, e)
                response = self._error(err)
            self._send(response)

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(response.body)

        def _route(self, verb: str, path: str, query: str, body: bytes) -> Response:
            known_path = False
            for v, pattern, handler in table:
                m = pattern.fullmatch(path)
                if m is None:
                    continue
                known_path = True
                if v == verb:
                    params = tuple(unquote(g) for g in m.groups())
                    try:
                        args = dict(parse_qsl(query[:4096], max_num_fields=32))
                    except ValueError as e:
                        raise InvalidParameter(f"bad query string: {e}") from e
                    return handler(Request(params, body, self.headers.get("Content-Type", ""), args))
            if known_path:
                return json_response(
                    {"sqlstate": "0A000", "message": f"{verb} is not allowed on {path}"}, status=405
                )
            return json_response({"sqlstate": "42P01", "message": f"no endpoint {path}"}, status=404)

        def _error(self, e: QservError) -> Response:
            e = scrub(e)  # no internal wording reaches a client (qserv.sqlerrors)
            doc = {"sqlstate": e.sqlstate, "message": e.message, "detail": e.detail, "hint": e.hint}
            return json_response(doc, status=error_status(e))

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

    return ApiHandler


def make_http_server(
    host: str,
    port: int,
    store: MetadataStore,
    director_index: DirectorIndex,
    replication_level: int,
    on_change: Callable[[], None] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> ThreadingHTTPServer:
    """The czar's HTTP server (port 0 picks a free port); call ``serve_forever`` in a thread.

    ``on_change`` runs after anything queries can see changed (a commit, a new table);
    ``max_body_bytes`` caps request bodies (CzarConfig.max_http_body_bytes).
    """
    ingest = Ingest(store, director_index, replication_level, on_change=on_change)
    admin = ReplicaAdmin(store, replication_level, ingest.clients)
    server = ThreadingHTTPServer((host, port), make_handler(ingest, admin, max_body_bytes))
    server.daemon_threads = True
    return server
