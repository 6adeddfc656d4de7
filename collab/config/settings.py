"""Settings: the one place configuration is read (CLI flags > COLLAB_* variables > defaults).

Every field is one setting, defined once (collab.config.definition): its default,
its help text, its section of the reference and, for the common ones, its
`collab serve` flag; its variable is `COLLAB_<FIELD NAME IN CAPS>`.
`collab serve --help` and docs/configuration.md are both built from these
definitions (`make docs`; a test keeps the file in step). Nothing else in collab
reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from collab.config.definition import ENV_PREFIX, Bound, SettingDefinition, setting

DEFAULT_WEB_DIR = Path(__file__).resolve().parents[2] / "web"

# Variables read by the command-line clients, not by the server: (variable, flag, help).
CLIENT_VARIABLES: tuple[tuple[str, str, str], ...] = (
    (
        ENV_PREFIX + "TOKEN",
        "`--token` of `collab snapshots` and `collab token revoke`",
        "the token `collab snapshots` and `collab token revoke|revocations` send to a "
        "server that requires one (a server verifies tokens, it never holds one)",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Everything a server is configured with; frozen, checked when built.

    `Settings.load()` reads the environment; the composition root (collab.runtime)
    builds everything from it."""

    # -- Server
    host: str = setting(
        "127.0.0.1",
        "interface to bind; any but a loopback one needs a key or `--allow-anonymous`",
        section="Server",
        flag="--host",
    )
    port: int = setting(1234, "TCP port", section="Server", flag="--port")
    public_url: str = setting(
        "",
        "where `collab snapshots` reaches this server when it finds it running on the "
        "same database",
        section="Server",
        shown_default="`http://HOST:PORT` (`127.0.0.1` for a wildcard host)",
    )
    lease_interval_s: float = setting(
        5.0,
        "how often a server renews its lease in the database (a lease lasts three intervals)",
        section="Server",
        bound=Bound.POSITIVE,
    )
    shutdown_timeout_s: float = setting(
        30.0,
        "graceful shutdown budget: for closing connections, for snapshotting the rooms, "
        "and for committing what is queued",
        section="Server",
        bound=Bound.POSITIVE,
    )
    web_dir: Path = setting(  # noqa: RUF009 (setting() is dataclasses.field())
        DEFAULT_WEB_DIR,
        "the browser editor: its built pages and bundle are served from `WEB_DIR/dist/`",
        section="Server",
        shown_default="the repository's `web/`",
    )
    allow_remote_images: bool = setting(
        False,
        "let the editor's Markdown preview show images from other sites (each one tells "
        "that site who reads the document, and when); off: only this server's and `data:` "
        "images",
        section="Server",
    )
    # -- Logging
    log_level: str = setting(
        "info",
        "least severe level logged: `debug`, `info`, `warning`, `error` or `critical`",
        section="Logging",
        flag="--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
    )
    log_format: str = setting(
        "text",
        "`text` (one line per event, document and connection first), or `json`: one "
        "object per line with `ts`, `level`, `logger`, `event`, and `doc` / `conn` when "
        "the event has them",
        section="Logging",
        flag="--log-format",
        choices=("text", "json"),
    )
    # -- Storage
    database_url: str = setting(
        "sqlite+aiosqlite:///./data/collab.db",
        "SQLAlchemy URL of the database; `postgresql+asyncpg://user@host/db` works as is",
        section="Storage",
        flag="--database",
        metavar="URL",
    )
    sqlite_synchronous: str = setting(
        "NORMAL",
        "SQLite only: `NORMAL` survives a killed process; `FULL` (or `EXTRA`) also survives "
        "power loss",
        section="Storage",
        flag="--sqlite-synchronous",
        choices=("NORMAL", "FULL", "EXTRA"),
    )
    write_batch_max_ops: int = setting(
        2000,
        "most writes the writer commits in one transaction",
        section="Storage",
        bound=Bound.AT_LEAST_ONE,
    )
    write_backlog_max_ops: int = setting(
        50000,
        "above this many uncommitted writes, receive loops wait for the database",
        section="Storage",
        bound=Bound.AT_LEAST_ONE,
    )
    # -- Rooms and compaction
    room_grace_s: float = setting(
        30.0,
        "seconds a room stays in memory after its last client leaves",
        section="Rooms and compaction",
        flag="--room-grace",
        metavar="SECONDS",
    )
    compact_after_updates: int = setting(
        1000,
        "snapshot a room after this many of its updates...",
        section="Rooms and compaction",
        flag="--compact-after-updates",
        metavar="N",
        bound=Bound.AT_LEAST_ONE,
    )
    compact_after_s: float = setting(
        300.0,
        "...or this many seconds after its first uncompacted update, whichever comes "
        "first (and when it unloads, and at shutdown)",
        section="Rooms and compaction",
        flag="--compact-after",
        metavar="SECONDS",
    )
    compact_after_quiet_s: float = setting(
        30.0,
        "...or once its editing has been quiet this many seconds, so a burst of "
        "editing shows as an automatic version soon after it ends (0: not for quiet)",
        section="Rooms and compaction",
        flag="--compact-after-quiet",
        metavar="SECONDS",
    )
    janitor_interval_s: float = setting(
        1.0,
        "how often compaction, unloading and idle connections are checked",
        section="Rooms and compaction",
        bound=Bound.POSITIVE,
    )
    # -- Version history
    auto_version_window_s: float = setting(
        300.0,
        "at most one automatic version per document per window: a compaction inside it "
        "updates the newest automatic version",
        section="Version history",
    )
    retention_keep_all_s: float = setting(
        3600.0, "keep every automatic version this young...", section="Version history"
    )
    retention_hourly_s: float = setting(
        86400.0, "...then the newest of each hour up to this age...", section="Version history"
    )
    retention_daily_s: float = setting(
        0.0,
        "...then the newest of each day up to this age (`0`: forever)",
        section="Version history",
    )
    retention_interval_s: float = setting(
        600.0,
        "how often retention thins versions",
        section="Version history",
        bound=Bound.POSITIVE,
    )
    history_workers: int = setting(
        2,
        "processes that compute diffs and restores of big documents, off the event "
        "loop (started on first use); also how many are computed at once: a diff "
        "beyond that is refused (429), a restore waits its turn",
        section="Version history",
        bound=Bound.AT_LEAST_ONE,
    )
    diff_max_bytes: int = setting(
        16 * 1024 * 1024,
        "a diff of a version (or of the current content) stored larger than this is "
        "refused (413): a diff costs about a second of CPU per MB of text",
        section="Version history",
        bound=Bound.LIMIT,
    )
    # -- Connections
    max_message_bytes: int = setting(
        32 * 1024 * 1024,
        "largest WebSocket message accepted; a larger one closes the connection (4413)",
        section="Connections",
        flag="--max-message-bytes",
        metavar="BYTES",
        bound=Bound.AT_LEAST_ONE,
    )
    # (The message bound sits far above the largest commit batch: one commit can
    # release that many relays at once to every peer.)
    send_queue_messages: int = setting(
        100_000,
        "a connection's send queue bound, in messages; a client over it is disconnected (4004)",
        section="Connections",
        bound=Bound.AT_LEAST_ONE,
    )
    send_queue_bytes: int = setting(
        64 * 1024 * 1024,
        "a connection's send queue bound, in bytes (4004)",
        section="Connections",
        bound=Bound.AT_LEAST_ONE,
    )
    keepalive_interval_s: float = setting(
        15.0,
        "an idle connection hears a no-op awareness message this often (y-websocket "
        "drops a socket that hears nothing for 30 s)",
        section="Connections",
        bound=Bound.POSITIVE,
    )
    close_timeout_s: float = setting(
        10.0,
        "how long a close frame may wait on a backed-up socket",
        section="Connections",
        bound=Bound.POSITIVE,
    )
    ws_ping_interval_s: float = setting(
        20.0,
        "WebSocket protocol pings, to notice half-open TCP connections (`0`: none)...",
        section="Connections",
        bound=Bound.LIMIT,
    )
    ws_ping_timeout_s: float = setting(
        20.0,
        "...and how long a pong may take before the connection is dropped (unless the "
        "client sent something else meanwhile: a fast client's pong waits behind it)",
        section="Connections",
        bound=Bound.LIMIT,
    )
    # -- Limits (0 disables a limit)
    max_document_bytes: int = setting(
        128 * 1024 * 1024,
        "an update that would grow a document past this is refused (4414)",
        section="Limits",
        bound=Bound.LIMIT,
    )
    max_awareness_bytes: int = setting(
        64 * 1024,
        "largest awareness message (4431)",
        section="Limits",
        bound=Bound.LIMIT,
    )
    max_state_vector_entries: int = setting(
        100_000,
        "most clients a sync step 1's state vector may list; its size is checked before "
        "it is inflated or decoded (4413)",
        section="Limits",
        bound=Bound.LIMIT,
    )
    max_client_ids_per_connection: int = setting(
        4,
        "awareness client ids one connection may own (y-websocket uses one); its states "
        "for more are ignored",
        section="Limits",
        bound=Bound.LIMIT,
    )
    max_awareness_states_per_document: int = setting(
        1_000,
        "awareness states a document holds (other processes' clients included); a new "
        "client's state beyond it is ignored: it edits, unseen",
        section="Limits",
        bound=Bound.LIMIT,
    )
    awareness_query_interval_s: float = setting(
        1.0,
        "a connection's query-awareness is answered at most this often; quicker repeats "
        "are ignored (it has been sent every change since)",
        section="Limits",
        bound=Bound.LIMIT,
    )
    max_connections: int = setting(
        10_000, "connections in all (1013)", section="Limits", bound=Bound.LIMIT
    )
    max_connections_per_document: int = setting(
        1_000,
        "connections to one document (1013)",
        section="Limits",
        bound=Bound.LIMIT,
    )
    max_loaded_documents: int = setting(
        10_000,
        "documents in memory; the least recently used idle ones are unloaded first, "
        "else a join is refused (1013)",
        section="Limits",
        bound=Bound.LIMIT,
    )
    rate_limit_per_s: float = setting(
        200.0,
        "messages per second per connection, sustained, edits aside (storage paces "
        "them); a faster connection is paced, not closed: its next message is read "
        "only when the token bucket allows...",
        section="Limits",
        bound=Bound.LIMIT,
    )
    rate_limit_burst: int = setting(
        2_000,
        "...and how many it may send above that rate in a burst",
        section="Limits",
        bound=Bound.LIMIT,
    )
    max_request_body_bytes: int = setting(
        1024 * 1024,
        "largest HTTP request body; a larger one is refused before it is read (413)",
        section="Limits",
        bound=Bound.LIMIT,
    )
    edit_max_body_bytes: int = setting(
        1024 * 1024,
        "largest body of an HTTP edit, import or replaced content (413); "
        "`COLLAB_MAX_REQUEST_BODY_BYTES` bounds every request before this",
        section="Limits",
        bound=Bound.AT_LEAST_ONE,
    )
    edit_rate_per_s: float = setting(
        20.0,
        "HTTP edits, imports, copies and exports per second per caller (its token's "
        "subject, or its address), sustained; past it a request is refused (429 with "
        "`Retry-After`); 0: no limit...",
        section="Limits",
        bound=Bound.LIMIT,
    )
    edit_rate_burst: int = setting(
        100,
        "...and how many it may make above that rate in a burst",
        section="Limits",
        bound=Bound.LIMIT,
    )
    max_request_header_bytes: int = setting(
        64 * 1024,
        "largest request line and headers of an HTTP request or WebSocket handshake (431)",
        section="Limits",
        bound=Bound.LIMIT,
    )
    request_timeout_s: float = setting(
        10.0,
        "an HTTP request or WebSocket handshake must send its headers within this long "
        "of its first byte (or of the connection opening), and its body within this long "
        "of its headers; else 408 and the connection is closed. A WebSocket message sent "
        "in fragments must be complete within this long of its first (else 4008)",
        section="Limits",
        bound=Bound.LIMIT,
    )
    max_sockets: int = setting(
        12_000,
        "open TCP connections of every kind (WebSockets, HTTP, handshakes in progress); "
        "one more is answered 503 and closed at once. Keep it above "
        "`COLLAB_MAX_CONNECTIONS`, and the process's open-files limit above it",
        section="Limits",
        bound=Bound.LIMIT,
    )
    idle_timeout_s: float = setting(
        600.0,
        "a connection that sends nothing for this long is closed (4008); y-websocket "
        "renews its presence every 15 s",
        section="Limits",
        bound=Bound.LIMIT,
    )
    # -- Access
    auth_secret: str = setting(
        "",
        "HMAC secret (at least 32 bytes) that tokens are signed with (HS256); setting it "
        "requires tokens",
        section="Access",
        is_secret=True,
    )
    auth_public_key: str = setting(
        "",
        "instead of the secret: a PEM public key or certificate, as text or a file path "
        "(RSA, EC, Ed25519), for tokens signed with its private half",
        section="Access",
        is_secret=True,
    )
    auth_algorithms: str = setting(
        "",
        "accepted algorithms, comma-separated (e.g. `PS256` for an RSA key)",
        section="Access",
        shown_default="by key: `HS256`; `RS256`, `ES256`/`ES384`/`ES512` or `EdDSA`",
    )
    auth_audience: str = setting("", "when set, tokens need this `aud`", section="Access")
    auth_issuer: str = setting("", "when set, tokens need this `iss`", section="Access")
    auth_leeway_s: float = setting(
        30.0,
        "clock skew allowed on `exp`, `nbf` and `iat`; an open connection is closed (4001) "
        "this long after its token's `exp`",
        section="Access",
        bound=Bound.NOT_NEGATIVE,
    )
    allow_anonymous: bool = setting(
        False,
        "run open (no tokens) on a non-loopback host",
        section="Access",
        flag="--allow-anonymous",
    )
    allowed_origins: str = setting(
        "",
        "other web origins allowed, comma-separated `scheme://host[:port]`, or `*`; pages "
        "served by this server always are",
        section="Access",
        flag="--allowed-origins",
        metavar="ORIGINS",
        shown_default="same origin only",
    )
    allowed_hosts: str = setting(
        "",
        "other host names this server answers to, comma-separated (`*.example.com` for "
        "every name under it, `*` for any); `localhost`, IP addresses, the "
        "`COLLAB_PUBLIC_URL` host and `--host` always are. A request or handshake with "
        "another `Host` header is refused (421): that stops DNS rebinding",
        section="Access",
    )
    # -- Cluster
    redis_url: str = setting(
        "",
        "run as one of several processes sharing documents through Redis, e.g. "
        "`redis://127.0.0.1:6379/0` (none: a server on its own, the only one on its "
        "database)",
        section="Cluster",
        flag="--redis-url",
        metavar="URL",
    )
    redis_prefix: str = setting(
        "collab:",
        "prefix of every Redis key, so several clusters (or test runs) can share one Redis",
        section="Cluster",
    )
    redis_stream_max_entries: int = setting(
        10_000,
        "a document's stream length (`XADD MAXLEN ~`); a process that falls further behind "
        "reloads the document from the database",
        section="Cluster",
        bound=Bound.AT_LEAST_ONE,
    )
    cluster_heartbeat_interval_s: float = setting(
        2.0,
        "how often a process renews its heartbeat in Redis...",
        section="Cluster",
        bound=Bound.POSITIVE,
    )
    cluster_heartbeat_ttl_s: float = setting(
        6.0,
        "...and how old it may get before the others take the process for dead (they "
        "remove its clients' presence and catch its documents up from the database)",
        section="Cluster",
    )

    # -- Events and webhooks
    webhook_urls: str = setting(
        "",
        "comma-separated URLs that every event is POSTed to, signed with "
        "`COLLAB_WEBHOOK_SECRET` (more can be added through the admin API); set by an "
        "administrator only: the server makes requests to them from inside your network",
        section="Events and webhooks",
        metavar="URLS",
    )
    webhook_secret: str = setting(
        "",
        "the key webhook bodies are signed with (HMAC-SHA256, header `X-Collab-Signature`); "
        "needed with `COLLAB_WEBHOOK_URLS`",
        section="Events and webhooks",
        is_secret=True,
    )
    webhook_max_attempts: int = setting(
        8,
        "attempts at delivering an event to a subscriber before it is parked (listed at "
        "`GET /api/webhooks/parked`, retried on request)",
        section="Events and webhooks",
        bound=Bound.AT_LEAST_ONE,
    )
    webhook_retry_base_s: float = setting(
        1.0,
        "the wait before a failed delivery's first retry; each next wait doubles...",
        section="Events and webhooks",
        bound=Bound.POSITIVE,
    )
    webhook_retry_max_s: float = setting(
        600.0,
        "...up to this",
        section="Events and webhooks",
        bound=Bound.POSITIVE,
    )
    webhook_timeout_s: float = setting(
        10.0,
        "how long a subscriber has to answer a delivery (2xx) before it counts as failed",
        section="Events and webhooks",
        bound=Bound.POSITIVE,
    )
    events_debounce_s: float = setting(
        2.0,
        "a document's edits become one `document.updated` event once nobody has edited it "
        "for this long...",
        section="Events and webhooks",
        bound=Bound.NOT_NEGATIVE,
    )
    events_max_delay_s: float = setting(
        30.0,
        "...or once its first edit has waited this long (a document edited without pause)",
        section="Events and webhooks",
        bound=Bound.POSITIVE,
    )
    events_poll_interval_s: float = setting(
        0.5,
        "how often each process looks for events to publish and deliveries that are due",
        section="Events and webhooks",
        bound=Bound.POSITIVE,
    )
    events_retention_s: float = setting(
        7 * 86400.0,
        "how long published events stay in the feed (`GET /api/events`) once delivered",
        section="Events and webhooks",
        bound=Bound.POSITIVE,
    )

    def __post_init__(self) -> None:
        if self.log_format not in {"text", "json"}:
            raise ValueError(f"log_format must be text or json, not {self.log_format!r}")
        if self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(
                f"sqlite_synchronous must be OFF/NORMAL/FULL/EXTRA, not {self.sqlite_synchronous!r}"
            )
        for definition in definitions():
            bound = definition.doc.bound
            if bound is not None and not bound.admits(getattr(self, definition.name)):
                raise ValueError(f"{definition.name} {bound}")
        if self.cluster_heartbeat_ttl_s <= self.cluster_heartbeat_interval_s:
            raise ValueError("cluster_heartbeat_ttl_s must be longer than the interval")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"redis_url must be redis://, rediss:// or unix://, not {self.redis_url!r}"
            )
        if not self.redis_prefix:
            raise ValueError("redis_prefix must not be empty")
        for url in self.webhook_url_list:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook_urls must be http:// or https:// URLs, not {url!r}")
        if self.webhook_url_list and not self.webhook_secret:
            raise ValueError("webhook_urls needs webhook_secret (COLLAB_WEBHOOK_SECRET)")

    @property
    def webhook_url_list(self) -> list[str]:
        """`webhook_urls` as a list (blank entries dropped)."""
        return [url.strip() for url in self.webhook_urls.split(",") if url.strip()]

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then COLLAB_* variables, then explicit overrides that are not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for definition in definitions():
            raw = environ.get(definition.env)
            if raw is not None and raw != "":
                values[definition.name] = definition.parse(raw)
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


def definitions() -> list[SettingDefinition]:
    """Every setting, in the order `Settings` defines them."""
    return [
        SettingDefinition(f.name, _kind(f), f.default, f.metadata["doc"]) for f in fields(Settings)
    ]


def client_token(environ: Mapping[str, str] | None = None) -> str | None:
    """`COLLAB_TOKEN`: the token command-line clients send to a server (not a server
    setting: the server verifies tokens, it never holds one)."""
    environ = os.environ if environ is None else environ
    return environ.get(ENV_PREFIX + "TOKEN") or None


def _kind(f: dataclasses.Field[Any]) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
