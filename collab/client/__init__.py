"""collab.client: a Python program as a collaborator (async, pycrdt, y-websocket protocol).

    async with connect("ws://localhost:8000/ws", "notes", token=token) as session:
        text = session.doc.get("content", type=Text)
        session.presence.set({"user": {"name": "Summariser", "color": "#0e7490"}})
        text += "\\nA line from a program."
        session.presence.set_cursor("content", len(str(text)))
        await session.saved()

Rank 2 in the layer table: it imports only collab's root (errors) and protocol
(the codec), plus pycrdt and websockets; no server code. docs/client.md is the guide.
"""

from collab.client.errors import (
    BadDocumentName,
    ClientError,
    ConnectionClosed,
    ConnectionLost,
    DocumentDeleted,
    Forbidden,
    HandshakeFailed,
    InvalidMessage,
    Refused,
    TooLarge,
    Unauthorized,
)
from collab.client.presence import Presence
from collab.client.reconnect import Reconnect
from collab.client.session import Session, SessionStats, connect

__all__ = [
    "BadDocumentName",
    "ClientError",
    "ConnectionClosed",
    "ConnectionLost",
    "DocumentDeleted",
    "Forbidden",
    "HandshakeFailed",
    "InvalidMessage",
    "Presence",
    "Reconnect",
    "Refused",
    "Session",
    "SessionStats",
    "TooLarge",
    "Unauthorized",
    "connect",
]
