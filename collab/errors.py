"""The documented exception tree and the WebSocket close codes each error maps to.

Every way a client's input can be wrong ends in exactly one `ProtocolError`
subclass; the transport turns it into a close frame with the error's code and
reason. Codes 1000-1015 are RFC 6455's; 4000-4999 are reserved by RFC 6455
section 7.4.2 for applications and are ours.
"""

from enum import IntEnum


class CloseCode(IntEnum):
    """Close codes collab sends. Part of the public contract: documented in the README."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down
    UNSUPPORTED_DATA = 1003  # a text frame: the Yjs protocol is binary
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    BAD_DOCUMENT_NAME = 4000
    MALFORMED_MESSAGE = 4001  # framing: bad varint, length beyond the frame, trailing bytes
    INVALID_UPDATE = 4002  # a Yjs update that does not decode
    INVALID_AWARENESS = 4003  # an awareness update that does not decode or is not JSON
    SLOW_CONSUMER = 4004  # the peer's send queue overflowed
    DOCUMENT_DELETED = 4005


class CollabError(Exception):
    """Root of collab's own exceptions."""


class ProtocolError(CollabError):
    """A peer sent something the protocol forbids; the peer is closed with `close_code`."""

    close_code: CloseCode = CloseCode.MALFORMED_MESSAGE

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


class BadDocumentName(ProtocolError):
    close_code = CloseCode.BAD_DOCUMENT_NAME


class DocumentNotFound(CollabError):
    """The named document has no stored state and no live room."""
