"""What collab.client raises: one exception per kind of refusal, from the close code.

The server ends a connection with a close code (docs/close-codes.md,
`collab.errors.CloseCode`). Codes 4400-4499 are permanent, as y-websocket treats
them: reconnecting would only be refused again (a bad token, a document outside
the token's scope, a deleted document, an edit too big), so the session stops and
raises the matching `Refused` subclass. Every other code is transient: the
session reconnects, and raises `ConnectionLost` only when reconnecting is off or
has given up. A refusal before the WebSocket exists is an HTTP status
(`HandshakeFailed`).
"""

from __future__ import annotations

from collab.errors import CloseCode, CollabError

# RFC 6455 section 7.1.5: the close code when the connection ended without a close frame.
ABNORMAL_CLOSURE = 1006


class ClientError(CollabError):
    """Root of collab.client's exceptions."""

    is_permanent = False


class ConnectionClosed(ClientError):
    """The server closed the connection with `close_code` and `reason`."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(f"closed by the server with {close_code}: {reason or '(no reason)'}")
        self.close_code = close_code
        self.reason = reason


class ConnectionLost(ConnectionClosed):
    """A transient close (a restart, a limit, a network failure: 1006) that the
    session did not, or could no longer, reconnect after."""


class Refused(ConnectionClosed):
    """A permanent refusal (4400-4499): the session does not reconnect."""

    is_permanent = True


class Unauthorized(Refused):
    """4401: no token, or a bad, expired or revoked one."""


class Forbidden(Refused):
    """4403: the token does not cover the document, or a read-only session edited it."""


class BadDocumentName(Refused):
    """4404: the name breaks the document-name rule."""


class DocumentDeleted(Refused):
    """4410: the document was deleted; this Doc holds its history and must not come back."""


class TooLarge(Refused):
    """4413 / 4414 / 4431: a message, the document or a presence state over the server's limit."""


class InvalidMessage(Refused):
    """4400 / 4415 / 4422 / 4423: the server could not decode what this client sent."""


class HandshakeFailed(ClientError):
    """No WebSocket: the server answered the handshake with an HTTP `status`, or
    could not be reached (`status` None). A 4xx status other than 408 and 429 is permanent."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(f"handshake failed ({status or 'no response'}): {detail}")
        self.status = status
        self.is_permanent = status is not None and 400 <= status < 500 and status not in (408, 429)


_REFUSALS: dict[int, type[Refused]] = {
    CloseCode.UNAUTHORIZED: Unauthorized,
    CloseCode.FORBIDDEN: Forbidden,
    CloseCode.BAD_DOCUMENT_NAME: BadDocumentName,
    CloseCode.DOCUMENT_DELETED: DocumentDeleted,
    CloseCode.MESSAGE_TOO_BIG: TooLarge,
    CloseCode.DOCUMENT_TOO_LARGE: TooLarge,
    CloseCode.AWARENESS_TOO_LARGE: TooLarge,
    CloseCode.MALFORMED_MESSAGE: InvalidMessage,
    CloseCode.UNSUPPORTED_DATA: InvalidMessage,
    CloseCode.INVALID_UPDATE: InvalidMessage,
    CloseCode.INVALID_AWARENESS: InvalidMessage,
}


def closed_error(close_code: int, reason: str) -> ConnectionClosed:
    """The exception for a close code: a typed `Refused` in 4400-4499, else `ConnectionLost`."""
    if 4400 <= close_code <= 4499:
        return _REFUSALS.get(close_code, Refused)(close_code, reason)
    return ConnectionLost(close_code, reason)
