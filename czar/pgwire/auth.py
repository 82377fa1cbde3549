"""Authentication of a StartupMessage: trust today, the seam for SCRAM-SHA-256 tomorrow.

An :class:`Authenticator` runs after the StartupMessage and before ParameterStatus. It talks to
the client through an :class:`AuthExchange` (send backend bytes, receive the next 'p' message), so
SCRAM is one new class: send ``encode_authentication_sasl(["SCRAM-SHA-256"])``, read the
SASLInitialResponse, send ``encode_authentication_sasl_continue(...)``, verify, then
``encode_authentication_ok()``. Failure raises an error with SQLSTATE 28P01/28000.
"""

from __future__ import annotations

from typing import Protocol

from czar.pgwire import protocol as pw


class AuthExchange(Protocol):
    """The connection as seen by an authenticator."""

    def send(self, data: bytes) -> None: ...

    async def receive(self) -> pw.PasswordMessage: ...


class Authenticator(Protocol):
    async def authenticate(self, startup: pw.StartupMessage, exchange: AuthExchange) -> str:
        """Authenticate the client and return the user name the session runs as."""
        ...


class TrustAuthenticator:
    """Accept every user, as PostgreSQL's ``trust`` method (local development clusters)."""

    async def authenticate(self, startup: pw.StartupMessage, exchange: AuthExchange) -> str:
        exchange.send(pw.encode_authentication_ok())
        return startup.parameters["user"]
