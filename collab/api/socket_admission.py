"""Who may open /ws/{document}: the decisions of collab.api.socket's handshake.

Two steps, because a refusal is told differently before and after the upgrade:

- `check_upgrade`, before it: a `Host` that is not one of ours (421, DNS
  rebinding) or a path outside /ws/ (404) is answered with an HTTP status
  instead of the upgrade.
- `admit_connection`, after it: a bad document name (4404) or a refused token or
  Origin (4401 / 4403, preceded by the y-protocols "permission denied" message)
  is a close frame with its code and reason, which a client can read (an HTTP
  status it could not).

Each refusal is logged and counted as the ASGI path does it (collab.api.access,
collab.api.http_edge). Pure decisions: nothing here writes to a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from websockets.datastructures import Headers
from websockets.http11 import Request

from collab.api.access import admit_socket, log_auth_refusal, socket_token
from collab.api.connection import BAD_NAME_REASON, ConnectionEdge, log_bad_name
from collab.api.http_edge import host_refusal_detail, log_host_refusal
from collab.auth.policy import AuthError, Grant
from collab.errors import CloseCode
from collab.protocol.codec import encode_permission_denied
from collab.protocol.names import is_valid_document_name

PATH_PREFIX = "/ws/"


@dataclass(frozen=True, slots=True)
class Target:
    """What a handshake asks for: the decoded path and the raw query string."""

    path: str
    query: str

    @classmethod
    def of(cls, request: Request) -> Target:
        raw_path, _, query = request.path.partition("?")
        return cls(unquote(raw_path), query)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Answer the handshake with this HTTP status instead of upgrading."""

    status: int
    text: str


@dataclass(frozen=True, slots=True)
class Refused:
    """Close the upgraded connection at once with `code` and `reason`, after
    `message` if there is one."""

    code: int
    reason: str
    message: bytes | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    name: str
    grant: Grant


def check_upgrade(
    edge: ConnectionEdge | None, target: Target, headers: Headers, client: str
) -> Rejected | None:
    """None if the handshake may be upgraded."""
    if edge is None or edge.access is None:
        return Rejected(503, "the server is starting")
    host = header(headers, "Host")
    if edge.allowed_hosts is not None and not edge.allowed_hosts.admits(host):
        edge.runtime.metrics.refused("host")
        log_host_refusal(client, "websocket", target.path, host)
        return Rejected(421, host_refusal_detail(host))
    if not target.path.startswith(PATH_PREFIX):
        return Rejected(404, "no WebSocket here: connect to /ws/{document}")
    return None


def admit_connection(
    edge: ConnectionEdge, target: Target, headers: Headers, client: str
) -> Admitted | Refused:
    """The document and grant of an upgraded connection, or how it is refused."""
    assert edge.access is not None  # check_upgrade passed
    name = target.path[len(PATH_PREFIX) :]
    if not is_valid_document_name(name):
        log_bad_name(name)
        return Refused(CloseCode.BAD_DOCUMENT_NAME, BAD_NAME_REASON)
    try:
        grant = admit_socket(
            edge.access,
            origin=header(headers, "Origin"),
            host=header(headers, "Host"),
            token=socket_token(
                dict(parse_qsl(target.query, keep_blank_values=True)).get("token"),
                header(headers, "Authorization") or "",
            ),
            document=name,
        )
    except AuthError as exc:
        log_auth_refusal(edge.runtime.metrics, exc, document=name, client=client, path=target.path)
        return Refused(exc.close_code, exc.message, encode_permission_denied(exc.message))
    return Admitted(name, grant)


def header(headers: Headers, name: str) -> str | None:
    """The first value of header `name` (Starlette's rule), if any."""
    values = headers.get_all(name)
    return values[0] if values else None
