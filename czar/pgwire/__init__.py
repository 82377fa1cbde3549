"""PostgreSQL wire protocol front end of the czar (psql, psycopg, SQLAlchemy clients)."""

from czar.pgwire.handler import QueryHandler, QueryResult, SessionInfo
from czar.pgwire.server import Limits, PgServer, ServerThread, running_server, serve, start

__all__ = [
    "Limits",
    "PgServer",
    "QueryHandler",
    "QueryResult",
    "ServerThread",
    "SessionInfo",
    "running_server",
    "serve",
    "start",
]
