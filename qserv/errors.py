"""Typed errors with SQLSTATE codes and positions.

Every error a client can see is a :class:`QservError`; each subclass fixes its SQLSTATE.
``position`` is the 1-based character offset into the user's SQL (as PostgreSQL's
ErrorResponse ``P`` field), so psycopg shows it as ``diag.statement_position``.
Any other exception reaching a front end becomes :class:`InternalError` (XX000) with an
incident id that also appears in the log.
"""

from __future__ import annotations

import uuid


class QservError(Exception):
    """Base of all client-visible errors."""

    sqlstate = "XX000"

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint
        self.position = position
        # the SQL text the error is about, when its position is not known yet (DuckDB errors:
        # what DuckDB underlined); qserv.sqlerrors.locate turns it into a position
        self.construct: str | None = None

    def __str__(self) -> str:
        return self.message


class SyntaxError_(QservError):
    sqlstate = "42601"


class UndefinedTable(QservError):
    sqlstate = "42P01"


class UndefinedColumn(QservError):
    sqlstate = "42703"


class AmbiguousColumn(QservError):
    sqlstate = "42702"


class UndefinedFunction(QservError):
    sqlstate = "42883"


class DatatypeMismatch(QservError):
    sqlstate = "42804"


class UndefinedDatabase(QservError):
    sqlstate = "3D000"


class UndefinedObject(QservError):
    """A named thing that does not exist (a worker, a role): PostgreSQL's undefined_object."""

    sqlstate = "42704"


class DuplicateObject(QservError):
    sqlstate = "42710"


class Unsupported(QservError):
    """A construct qserv does not (yet) evaluate distributed: refused, never answered wrongly."""

    sqlstate = "0A000"


class AccessDenied(QservError):
    """Writes, DDL and file/network access through SQL are refused."""

    sqlstate = "42501"


class InvalidParameter(QservError):
    sqlstate = "22023"


class DataError(QservError):
    """Bad input data (loader: unparsable value, missing key, unknown director row)."""

    sqlstate = "22000"


class InvalidTextRepresentation(DataError):
    """A value that does not parse as its type (``CAST('abc' AS INTEGER)``)."""

    sqlstate = "22P02"


class NumericOutOfRange(DataError):
    sqlstate = "22003"


class DivisionByZero(DataError):
    sqlstate = "22012"


class QueryCanceled(QservError):
    sqlstate = "57014"


class WorkerUnavailable(QservError):
    sqlstate = "08006"


class ProtocolViolation(QservError):
    sqlstate = "08P01"


class CardinalityViolation(QservError):
    """A scalar sub-query that returned more than one row (PostgreSQL: 21000)."""

    sqlstate = "21000"


class UndefinedParameter(QservError):
    """A ``$n`` no Bind can supply (PostgreSQL: "there is no parameter $n")."""

    sqlstate = "42P02"


class StatementTooComplex(QservError):
    """A statement past a configured size limit, or nested deeper than the parser recurses."""

    sqlstate = "54001"


class TooManyConnections(QservError):
    sqlstate = "53300"


class DataCorrupted(QservError):
    """Stored rows a worker cannot read back: its data file fails DuckDB's block checksums
    (PostgreSQL: data_corrupted). Their chunks are read from other replicas and repaired."""

    sqlstate = "XX001"


class InternalError(QservError):
    sqlstate = "XX000"

    def __init__(self, message: str = "internal error", **kwargs: object) -> None:
        self.incident = uuid.uuid4().hex[:12]
        super().__init__(f"{message} (incident {self.incident})", **kwargs)  # type: ignore[arg-type]


_BY_SQLSTATE: dict[str, type[QservError]] = {}
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, QservError) and _cls is not QservError:
        _BY_SQLSTATE.setdefault(_cls.sqlstate, _cls)


def from_sqlstate(
    sqlstate: str,
    message: str,
    *,
    detail: str | None = None,
    hint: str | None = None,
    position: int | None = None,
) -> QservError:
    """Rebuild a typed error from its SQLSTATE (errors crossing gRPC or HTTP)."""
    cls = _BY_SQLSTATE.get(sqlstate, QservError)
    err = QservError.__new__(cls)
    QservError.__init__(err, message, detail=detail, hint=hint, position=position)
    err.sqlstate = sqlstate
    return err
