"""`collab serve`: run the server under uvicorn.

The flags are made from the settings definitions (collab.config): each setting
with a flag becomes one, with its help text, its `COLLAB_*` variable and its
default, so `collab serve --help` and docs/configuration.md say the same thing.
A flag overrides the variable, which overrides the default.
"""

from __future__ import annotations

import argparse
import gc
import logging
import socket
from pathlib import Path
from typing import Any

import uvicorn
from pycrdt import Doc

from collab import __version__
from collab.api.app import allowed_hosts_of, create_app, refusal_counter
from collab.auth.tokens import build_access_policy
from collab.cli.edge_protocols import (
    ConnectionLimits,
    bounded_http_protocol,
    edge_socket_protocol,
)
from collab.config import Settings, definitions
from collab.config.definition import SettingDefinition
from collab.logs import configure_logging, redact_url

_FLAG_TYPES: dict[str, Any] = {"int": int, "float": float, "Path": Path}


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting that has one, in the order the settings define them."""
    for definition in definitions():
        flag = definition.doc.flag
        if flag is None:
            continue
        options: dict[str, Any] = {"dest": definition.name, "help": flag_help(definition)}
        if definition.kind == "bool":
            # None, not False: an absent flag must leave the variable's value alone.
            options.update(action="store_true", default=None)
        else:
            if definition.kind in _FLAG_TYPES:
                options["type"] = _FLAG_TYPES[definition.kind]
            if definition.doc.metavar:
                options["metavar"] = definition.doc.metavar
            if definition.doc.choices:
                options["choices"] = list(definition.doc.choices)
        parser.add_argument(flag, **options)


def flag_help(definition: SettingDefinition) -> str:
    """The help text, then where else the setting comes from: `(COLLAB_X, default Y)`."""
    where = definition.env
    if definition.default_text:
        where += f", default {definition.default_text}"
    if definition.default_note:
        where += f" = {definition.default_note}"
    text = f"{definition.doc.help} ({where})".replace("`", "")
    return text.replace("%", "%%")  # argparse formats help with %


def run_serve_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Settings from the flags and the environment, checked, then serve until stopped."""
    options = {d.name: getattr(args, d.name, None) for d in definitions() if d.doc.flag}
    try:
        settings = Settings.load(**options)
        build_access_policy(settings)  # refuse to start on unusable auth settings
        allowed_hosts_of(settings)  # ...or host names
    except ValueError as exc:
        parser.error(str(exc))
    serve(settings)
    return 0


def uvicorn_config(settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration for `settings` (the tests' in-process server too)."""
    app = create_app(settings)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "log_level": settings.log_level,
        # httptools with the limits uvicorn lacks (sockets, header time and size);
        # not `limit_concurrency`: see collab.cli.edge_protocols.
        "http": bounded_http_protocol(
            ConnectionLimits(
                max_sockets=settings.max_sockets,
                request_timeout_s=settings.request_timeout_s,
                max_request_header_bytes=settings.max_request_header_bytes,
                count_refusal=refusal_counter(app),
            )
        ),
        # /ws/ served without ASGI (collab.api.socket); its own size check and pings.
        "ws": edge_socket_protocol(
            app, is_deflate_offered=overrides.get("ws_per_message_deflate", True)
        ),
        # For uvicorn's own WebSocket protocols, when `ws` is overridden (the bench's
        # transport variants; /ws/ then goes through ASGI): the message bound above
        # ours (our 4413, not the library's 1009) and the pings of the settings.
        "ws_max_size": settings.max_message_bytes * 2 + 1,
        "ws_ping_interval": settings.ws_ping_interval_s or None,
        "ws_ping_timeout": settings.ws_ping_timeout_s or None,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    logger = logging.getLogger("collab")
    logger.info(
        "collab %s starting: http://%s:%d (WebSocket ws://%s:%d/ws/{document}), database %s",
        __version__,
        settings.host,
        settings.port,
        settings.host,
        settings.port,
        redact_url(settings.database_url),
    )
    StartupFrozenServer(uvicorn_config(settings)).run()


# Net allocations of tracked objects between two collections of the youngest
# generation (CPython's default: 700); see `StartupFrozenServer`.
YOUNG_COLLECTION_ALLOCATIONS = 5000


class StartupFrozenServer(uvicorn.Server):
    """uvicorn's server, with what exists once the app has started moved out of
    the garbage collector's reach (`gc.freeze`), and the youngest generation
    collected every 5,000 net allocations instead of 700.

    Why: the modules, the schema, the settings and the runtime are a few hundred
    thousand objects that live as long as the process, and every full collection
    walked all of them. Connecting 5,000 clients triggered several, each a pause
    of the whole loop: 2.3 s of 11.7 s of CPU went to the collector
    (bench/RESULTS.md, session 6). Garbage made later is collected as before.
    The threshold: every connection leaves a few dozen tracked objects that live
    as long as it does, so under a burst of joins the default one promoted them
    through collection after collection, and the older generations filled fast
    enough to bring full collections (3 while 5,000 clients connected, up to
    120 ms each); with 5,000 the collector's time there halves (0.35 -> 0.16 s)
    and no full collection runs (bench/RESULTS.md, session 7). Steady editing
    allocates little that survives: fan-out saw ~25 young collections in 10 s
    either way."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        # The first Doc made on the loop imports anyio's asyncio backend (each
        # Doc holds an anyio lock): 13 ms of the first room's load after every
        # restart, paid here instead, and frozen with the rest.
        Doc()
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, older, oldest)
