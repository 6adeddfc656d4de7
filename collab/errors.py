"""The documented exception tree and the WebSocket close codes each error maps to.

Every way a client's input can be wrong ends in exactly one `ProtocolError`
subclass; the transport turns it into a close frame with the error's code and
reason. Codes 1000-1015 are RFC 6455's; 4000-4999 are reserved by RFC 6455
section 7.4.2 for applications and are ours.

y-websocket (v3) treats 4400-4499 as permanent, mirroring HTTP 4xx: it stops
reconnecting. So every condition that a reconnect would only repeat (bad name,
bad input, a deleted document) is in that band - otherwise the client would loop,
re-uploading its whole state each time - while conditions that a reconnect
cures (a slow consumer, a restart) are outside it.

Tokens follow the same line. A token refused at connect (missing, bad, expired,
revoked: 4401) is refused again on every reconnect with it, so that is
permanent. A token that expires while its connection is open closes it with
TOKEN_EXPIRED (4001), outside the band: routine, not a verdict. y-websocket
reconnects once with the `params` it holds now, so a client that refreshed its
token (`provider.params.token = ...`) carries on by itself, and one that did not
is refused 4401 on that reconnect and stops: one extra attempt, never a loop. A
revoked token's connection is closed with 4401 at once: an administrator took
that access back, and only a new token (if anyone issues one) reconnects.
"""

from enum import IntEnum


class CloseCode(IntEnum):
    """Close codes collab sends. Part of the public contract: documented in the README."""

    # transient: the client reconnects
    NORMAL = 1000
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # graceful shutdown: reconnect (elsewhere)
    TRY_AGAIN_LATER = 1013  # a connection limit or the loaded-documents limit is reached
    TOKEN_EXPIRED = 4001  # the connection's token reached its `exp`: reconnect with a fresh one
    SLOW_CONSUMER = 4004  # the peer's send queue overflowed; it re-syncs on reconnect
    IDLE_TIMEOUT = 4008  # the client sent nothing for COLLAB_IDLE_TIMEOUT_S
    # Not sent any more: a client over its rate limit is paced (its reading waits),
    # never closed. Earlier versions closed it with this code; clients still know it.
    RATE_LIMITED = 4029
    STORAGE_UNAVAILABLE = 4503  # the database is failing: edits are refused until it is back
    # permanent (4400-4499): y-websocket stops reconnecting
    MALFORMED_MESSAGE = 4400  # framing: bad varint, length beyond the frame, trailing bytes
    UNAUTHORIZED = 4401  # token missing, malformed, badly signed, expired, or revoked
    FORBIDDEN = 4403  # document outside the token's scope, bad Origin, or a read-only edit
    BAD_DOCUMENT_NAME = 4404
    FOREIGN_CLIENT_ID = 4409  # an update creating content under another author's client id
    DOCUMENT_DELETED = 4410
    MESSAGE_TOO_BIG = 4413
    DOCUMENT_TOO_LARGE = 4414  # the update would grow the document past its limit
    UNSUPPORTED_DATA = 4415  # a text frame: the Yjs protocol is binary
    INVALID_UPDATE = 4422  # a Yjs update or state vector that does not decode
    INVALID_AWARENESS = 4423  # an awareness update that does not decode or is not JSON
    AWARENESS_TOO_LARGE = 4431  # an awareness update over COLLAB_MAX_AWARENESS_BYTES


class CollabError(Exception):
    """Root of collab's own exceptions."""


class Refusal(CollabError):
    """The connection is closed with `close_code` and `reason`; the room carries on."""

    close_code: CloseCode = CloseCode.INTERNAL_ERROR

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProtocolError(Refusal):
    """A peer sent something the protocol forbids; the peer is closed with `close_code`."""

    close_code = CloseCode.MALFORMED_MESSAGE


class MalformedMessage(ProtocolError):
    close_code = CloseCode.MALFORMED_MESSAGE


class InvalidUpdate(ProtocolError):
    close_code = CloseCode.INVALID_UPDATE


class InvalidAwareness(ProtocolError):
    close_code = CloseCode.INVALID_AWARENESS


class MessageTooBig(ProtocolError):
    close_code = CloseCode.MESSAGE_TOO_BIG


class UnsupportedData(ProtocolError):
    close_code = CloseCode.UNSUPPORTED_DATA


class UnfinishedMessage(ProtocolError):
    """A message sent in fragments whose last did not come in time."""

    close_code = CloseCode.IDLE_TIMEOUT


class DocumentTooLarge(ProtocolError):
    close_code = CloseCode.DOCUMENT_TOO_LARGE


class AwarenessTooLarge(ProtocolError):
    close_code = CloseCode.AWARENESS_TOO_LARGE


class DeletedHistory(ProtocolError):
    """An update carrying the history of a deleted document: applying it would
    bring the deleted content back (a client that held it reconnected)."""

    close_code = CloseCode.DOCUMENT_DELETED


class ForeignClientId(ProtocolError):
    """An update that creates content under a Yjs client id another author owns:
    applying it would attribute this connection's edits to someone else."""

    close_code = CloseCode.FOREIGN_CLIENT_ID


class AtCapacity(Refusal):
    """A connection or loaded-documents limit is reached; retrying later may work."""

    close_code = CloseCode.TRY_AGAIN_LATER


class StorageUnavailable(Refusal):
    """Not the client's fault: the database is failing, so an edit cannot be made
    durable and is refused rather than relayed. The client keeps it and resends
    it when it reconnects."""

    close_code = CloseCode.STORAGE_UNAVAILABLE


class ReadOnlyEdit(Refusal):
    """A connection with read access sent an edit; it was neither applied nor relayed."""

    close_code = CloseCode.FORBIDDEN


class MissingDriver(CollabError):
    """A URL asks for a service whose Python driver is an optional extra that is
    not installed: PostgreSQL (asyncpg, `collab[postgres]`) or Redis (redis,
    `collab[cluster]`). The default install runs on SQLite alone."""

    def __init__(self, url_kind: str, driver: str, extra: str) -> None:
        super().__init__(
            f"{url_kind} needs the {driver} package, which is not installed: "
            f"pip install 'collab[{extra}]'"
        )
        self.driver = driver
        self.extra = extra


class DocumentNotFound(CollabError):
    """The named document has no stored state and no live room."""
