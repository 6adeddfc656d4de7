"""Authorization in the transport: REST dependencies, the WebSocket check, CORS.

Translates requests into `AccessPolicy.admit` calls (collab.auth.policy holds the rules)
and refusals into HTTP 401 (with `WWW-Authenticate: Bearer`, RFC 6750) / 403 JSON
errors or WebSocket close codes 4401 / 4403. Tokens travel as
`Authorization: Bearer` on REST and as `?token=` on the WebSocket URL (browsers
cannot set headers on a WebSocket; y-websocket's `params` option puts it there),
or `Authorization: Bearer` on the WebSocket handshake for non-browser clients.

One log line per refusal, with its reason and the client's address, never the
token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from collab.auth.policy import AccessPolicy, AuthError, AuthFailure, Grant, Role, Unauthenticated
from collab.metrics import Metrics
from collab.storage.attribution import ANONYMOUS, Author

logger = logging.getLogger(__name__)

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A token from `collab token issue` (needed when the server has a key)",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def access_of(connection: HTTPConnection) -> AccessPolicy:
    return connection.app.state.access  # type: ignore[no-any-return]


def _client(connection: HTTPConnection) -> str:
    return f"{connection.client.host}:{connection.client.port}" if connection.client else "-"


def log_refusal(connection: HTTPConnection, exc: AuthError, document: str | None) -> None:
    """One log line and one count (`collab_auth_failures_total{reason}`) per refusal."""
    log_auth_refusal(
        connection.app.state.runtime.metrics,
        exc,
        document=document,
        client=_client(connection),
        path=connection.url.path,
    )


def log_auth_refusal(
    metrics: Metrics, exc: AuthError, *, document: str | None, client: str, path: str
) -> None:
    """`log_refusal` for a connection that has no Starlette request (collab.api.socket)."""
    metrics.auth_failed(exc.failure)
    logger.warning(
        "doc=%s client=%s refused %s (%s): %s",
        document or "-",
        client,
        path,
        exc.failure,
        exc.message,
    )


def _admit(connection: HTTPConnection, token: str | None, role: Role) -> Grant:
    return access_of(connection).admit(
        origin=connection.headers.get("origin"),
        host=connection.headers.get("host"),
        token=token,
        document=connection.path_params.get("name"),
        role=role,
    )


def require(
    role: Role,
) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Grant]]:
    """A dependency: the request's grant if it may act on `{name}` (if the path
    has one) with `role`; otherwise an `AuthError`, which `refuse_request` answers."""

    async def grant_for(request: Request, credentials: Credentials) -> Grant:
        return _admit(request, credentials.credentials if credentials else None, role)

    return grant_for


# For a route's `dependencies=[...]`, or as a parameter type when it needs the grant.
READ_ACCESS = Depends(require(Role.READ))
WRITE_ACCESS = Depends(require(Role.WRITE))
ADMIN_ACCESS = Depends(require(Role.ADMIN))
ReadGrant = Annotated[Grant, READ_ACCESS]
WriteGrant = Annotated[Grant, WRITE_ACCESS]
AdminGrant = Annotated[Grant, ADMIN_ACCESS]


def acting_subject(
    connection: HTTPConnection, grant: Grant, claimed: str | None = None
) -> str | None:
    """Who a change is recorded as made by. With tokens on, the token's subject
    (`sub`; None if it has none), never a name from the request: a client cannot
    write history in someone else's name. On an open server nobody is
    authenticated, so the name the request gives (`claimed`) is all there is."""
    return claimed if access_of(connection).is_open else grant.subject


def author_of(grant: Grant, name: str | None = None) -> Author:
    """Whom a connection's or a request's edits are attributed to: the token's
    subject (verified), or, on an open server or for a token with no `sub`,
    "anonymous" with the name the client gives (unverified)."""
    if grant.subject:
        return Author(grant.subject, name, is_verified=True)
    return Author(ANONYMOUS, name)


async def refuse_request(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for `AuthError`."""
    assert isinstance(exc, AuthError)
    log_refusal(request, exc, request.path_params.get("name"))
    headers = None
    if isinstance(exc, Unauthenticated):
        error = "" if exc.failure is AuthFailure.MISSING_TOKEN else ', error="invalid_token"'
        headers = {"WWW-Authenticate": f'Bearer realm="collab"{error}'}
    return JSONResponse({"detail": exc.message}, status_code=exc.http_status, headers=headers)


def admit_websocket(connection: HTTPConnection) -> Grant:
    """The grant for a WebSocket to `/ws/{name}`: at least read access."""
    return admit_socket(
        access_of(connection),
        origin=connection.headers.get("origin"),
        host=connection.headers.get("host"),
        token=socket_token(
            connection.query_params.get("token"), connection.headers.get("authorization", "")
        ),
        document=connection.path_params.get("name"),
    )


def socket_token(query_token: str | None, authorization: str) -> str | None:
    """A WebSocket's token: `?token=`, else `Authorization: Bearer`."""
    if query_token is not None:
        return query_token
    scheme, _, credentials = authorization.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def admit_socket(
    access: AccessPolicy,
    *,
    origin: str | None,
    host: str | None,
    token: str | None,
    document: str | None,
) -> Grant:
    """The grant for a WebSocket handshake with these headers (AuthError if none)."""
    return access.admit(origin=origin, host=host, token=token, document=document, role=Role.READ)


def install_cors(app: FastAPI, access: AccessPolicy) -> None:
    """CORS headers for the other origins allowed; none by default (same-origin)."""
    origins = access.origins
    if not origins.is_cross_origin_allowed:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"] if origins.allows_any else sorted(origins.allowed),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "If-Match"],
        expose_headers=["ETag", "Content-Disposition"],
        max_age=600,
    )
