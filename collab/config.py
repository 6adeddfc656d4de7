"""Settings: the one place configuration is read (CLI flags > COLLAB_* variables > defaults).

Every field can be set by the environment variable `COLLAB_<FIELD NAME IN CAPS>`;
the README's configuration table lists them. Nothing else in collab reads the
environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "COLLAB_"
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 1234
    database_url: str = "sqlite+aiosqlite:///./data/collab.db"
    log_level: str = "info"
    # "text" (human) or "json" (one object per line, for log pipelines).
    log_format: str = "text"
    # SQLite only: NORMAL survives a killed process; FULL also survives power loss.
    sqlite_synchronous: str = "NORMAL"
    # A room stays in memory this long after its last client leaves.
    room_grace_s: float = 30.0
    # Compaction: snapshot a room after this many updates, or this long after its
    # first uncompacted update, whichever comes first (and on unload and shutdown).
    compact_after_updates: int = 1000
    compact_after_s: float = 300.0
    janitor_interval_s: float = 1.0
    # Version history: automatic versions are at most one per window per document;
    # retention keeps every automatic version for keep_all, then one an hour until
    # hourly, then one a day (for daily seconds; 0 keeps them forever).
    auto_version_window_s: float = 300.0
    retention_keep_all_s: float = 3600.0
    retention_hourly_s: float = 86400.0
    retention_daily_s: float = 0.0
    retention_interval_s: float = 600.0
    # How the CLI reaches this server when it finds it running on the same database
    # (default: http://HOST:PORT, with 127.0.0.1 for a wildcard host).
    public_url: str = ""
    lease_interval_s: float = 5.0
    # Largest WebSocket message accepted (bytes); larger ones close with 4413.
    max_message_bytes: int = 32 * 1024 * 1024
    # Per-connection outbox bound; a client over it is disconnected (4004).
    # (The message bound sits far above the largest commit batch: one commit can
    # release that many relays at once to every peer.)
    send_queue_messages: int = 100_000
    send_queue_bytes: int = 64 * 1024 * 1024
    # An idle connection hears a no-op awareness message this often (y-websocket
    # drops a socket that hears nothing for 30 s).
    keepalive_interval_s: float = 15.0
    close_timeout_s: float = 10.0
    # Limits (0 disables a limit). Refusals carry a close code and a log line; see
    # the README's security section.
    max_document_bytes: int = 128 * 1024 * 1024  # an update growing it past: 4414
    max_awareness_bytes: int = 64 * 1024  # one awareness message: 4431
    max_connections: int = 10_000  # in all: 1013
    max_connections_per_document: int = 1_000  # 1013
    max_loaded_documents: int = 10_000  # idle ones unload first (LRU); else 1013
    # Per-connection token bucket: sustained messages/s and the burst above it: 4029.
    rate_limit_per_s: float = 200.0
    rate_limit_burst: int = 2_000
    idle_timeout_s: float = 600.0  # nothing received for this long: 4008
    # WebSocket protocol pings: a peer that does not answer within the timeout is
    # dropped (half-open TCP connections).
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0
    # Group commit: most ops in one transaction; receive loops wait above the backlog.
    write_batch_max_ops: int = 2000
    write_backlog_max_ops: int = 50000
    shutdown_timeout_s: float = 30.0
    web_dir: Path = field(default=DEFAULT_WEB_DIR)
    # Access (README, Security). With a key, every connection and REST call needs a
    # token signed with it: an HMAC secret (HS256) or a PEM public key, as text or a
    # file path (RS256/ES256/...). Without one the server is open; it refuses a
    # non-loopback host then, unless allow_anonymous.
    auth_secret: str = field(default="", repr=False)
    auth_public_key: str = field(default="", repr=False)
    auth_algorithms: str = ""  # comma-separated; default: the key's (HS256, RS256, ES256)
    auth_audience: str = ""  # when set, tokens need this `aud`
    auth_issuer: str = ""  # when set, tokens need this `iss`
    auth_leeway_s: float = 30.0  # clock skew allowed on exp/nbf/iat
    allow_anonymous: bool = False
    # Browser pages of other origins allowed to use the WebSocket and REST API
    # (comma-separated `scheme://host[:port]`, or `*`); pages served by this server
    # always are.
    allowed_origins: str = ""
    # Several server processes on one database: they share updates and presence
    # through Redis Streams (empty: a server on its own, the only one allowed on
    # its database). Keys live under the prefix, so clusters can share a Redis.
    redis_url: str = ""
    redis_prefix: str = "collab:"
    redis_stream_max_entries: int = 10_000  # per document (XADD MAXLEN ~)
    # A process whose heartbeat is older than the TTL is dead: the others remove
    # its clients' presence and catch its documents up from storage.
    cluster_heartbeat_interval_s: float = 2.0
    cluster_heartbeat_ttl_s: float = 6.0

    def __post_init__(self) -> None:
        if self.log_format not in {"text", "json"}:
            raise ValueError(f"log_format must be text or json, not {self.log_format!r}")
        if self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(
                f"sqlite_synchronous must be OFF/NORMAL/FULL/EXTRA, not {self.sqlite_synchronous!r}"
            )
        self._require(
            lambda value: value >= 1,
            "must be at least 1",
            "compact_after_updates",
            "max_message_bytes",
            "send_queue_messages",
            "send_queue_bytes",
            "write_batch_max_ops",
            "write_backlog_max_ops",
            "redis_stream_max_entries",
        )
        self._require(
            lambda value: value >= 0,
            "must be 0 (no limit) or more",
            "max_document_bytes",
            "max_awareness_bytes",
            "max_connections",
            "max_connections_per_document",
            "max_loaded_documents",
            "rate_limit_per_s",
            "rate_limit_burst",
            "idle_timeout_s",
            "ws_ping_interval_s",
            "ws_ping_timeout_s",
        )
        self._require(
            lambda value: value > 0,
            "must be greater than 0",
            "keepalive_interval_s",
            "janitor_interval_s",
            "retention_interval_s",
            "lease_interval_s",
            "close_timeout_s",
            "shutdown_timeout_s",
            "cluster_heartbeat_interval_s",
        )
        self._require(lambda value: value >= 0, "must not be negative", "auth_leeway_s")
        if self.cluster_heartbeat_ttl_s <= self.cluster_heartbeat_interval_s:
            raise ValueError("cluster_heartbeat_ttl_s must be longer than the interval")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"redis_url must be redis://, rediss:// or unix://, not {self.redis_url!r}"
            )
        if not self.redis_prefix:
            raise ValueError("redis_prefix must not be empty")

    def _require(self, is_valid: Callable[[Any], bool], requirement: str, *names: str) -> None:
        for name in names:
            if not is_valid(getattr(self, name)):
                raise ValueError(f"{name} {requirement}")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then COLLAB_* variables, then explicit overrides that are not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def advertised_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"


_BOOLEANS = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}


def client_token(environ: Mapping[str, str] | None = None) -> str | None:
    """`COLLAB_TOKEN`: the token command-line clients send to a server (not a server
    setting: the server verifies tokens, it never holds one)."""
    environ = os.environ if environ is None else environ
    return environ.get(ENV_PREFIX + "TOKEN") or None


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            return _BOOLEANS[raw.strip().lower()]
    except KeyError:
        raise ValueError(
            f"{ENV_PREFIX}{f.name.upper()}={raw!r}: use 1/true/yes/on or 0/false/no/off"
        ) from None
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{f.name.upper()}={raw!r}: not a valid {kind}") from exc
    return raw
