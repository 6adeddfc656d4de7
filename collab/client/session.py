"""One document kept in sync with a collab server over the y-websocket protocol.

A `Session` owns a pycrdt `Doc` and one task that holds a WebSocket to the
document: on each connection it sends sync step 1, answers the server's step 1
with step 2 (so edits made while disconnected are uploaded), applies what the
server relays, and sends every local change to the Doc as an update. Frames are
encoded and decoded by collab.protocol's codec.

Durability (`saved`): what the server sends is committed, so a Doc of what it
sent tells which of our edits are durable (collab.client.durability).

Reconnecting: a transient close (anything outside 4400-4499) or a failed
handshake reconnects with exponential backoff and re-syncs; a permanent refusal
ends the session with its typed exception (collab.client.errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import websockets
from pycrdt import Doc, TransactionEvent
from websockets.asyncio.client import ClientConnection

from collab.client.durability import Durability
from collab.client.errors import (
    ABNORMAL_CLOSURE,
    ClientError,
    HandshakeFailed,
    closed_error,
)
from collab.client.presence import Presence
from collab.client.reconnect import DEFAULT_RECONNECT, Reconnect
from collab.errors import ProtocolError
from collab.protocol.codec import (
    AuthMessage,
    AwarenessUpdate,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    UnknownMessage,
    decode_message,
    encode_awareness,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)

logger = logging.getLogger(__name__)

Token = str | Callable[[], str]


@dataclass(slots=True)
class SessionStats:
    """Counters of what this session heard and how often it reconnected."""

    messages_received: int = 0
    updates_received: int = 0  # relayed updates (sync "update" messages), not step 2s
    connections: int = 0


class Session:
    """A Doc kept in sync with one document on a collab server (see the module doc).

    Use it as `async with Session(url) as session:` (or `connect()`), which waits
    for the first sync and closes it afterwards.
    """

    def __init__(
        self,
        url: str,
        *,
        doc: Doc[Any] | None = None,
        token: Token | None = None,
        reconnect: Reconnect | None = DEFAULT_RECONNECT,
        websocket_options: Mapping[str, Any] | None = None,
        presence_renew_interval_s: float = 15.0,
    ) -> None:
        self.url = url
        self.doc: Doc[Any] = doc if doc is not None else Doc()
        self.presence = Presence(self.doc, self._send_presence)
        self.stats = SessionStats()
        self.close_code: int | None = None  # of the last connection, once it closed
        self.close_reason: str | None = None
        self._token = token
        self._reconnect = reconnect
        # websockets' default max_size (1 MiB) is below a big document's step 2.
        self._websocket_options = {"max_size": None, **(websocket_options or {})}
        self._renew_interval_s = presence_renew_interval_s
        self._durability = Durability(self.doc)
        self._ws: ClientConnection | None = None
        self._outbox: asyncio.Queue[bytes | str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._is_synced = False
        self._is_synced_once = False  # on the current connection: resets the backoff
        self._is_closing = False
        self._error: ClientError | None = None
        self._is_error_raised = False  # to the program, by a wait
        self._done = asyncio.Event()
        self._progress = asyncio.Event()  # set and replaced whenever anything changes
        self._applying_remote = False
        self._step1_sent = 0  # on the current connection
        self._step2_received = 0
        self._subscription = self.doc.observe(self._on_local_change)

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.start()
        try:
            await self.synced()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
        if exc is None and self._error is not None and not self._is_error_raised:
            if self._error.is_permanent:
                raise self._error  # a refusal nobody awaited must not pass silently

    def start(self) -> None:
        """Start connecting (in a task of this session's own); returns at once."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.url)

    async def close(self) -> None:
        """Leave: what is queued is sent, our presence withdrawn, the socket closed;
        no reconnect. Edits not yet `saved()` may be lost if the server fails now."""
        self._is_closing = True
        ws = self._ws
        if ws is not None:
            self.presence.set(None)
            await self.flush()
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.close()
        elif self._task is not None:
            self._task.cancel()  # connecting, or waiting to reconnect
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._finish(None)

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued frame is written to the socket (or it closed)."""
        outbox, task = self._outbox, self._task
        if outbox is None or task is None:
            return
        drained = asyncio.ensure_future(outbox.join())
        try:
            await asyncio.wait(
                [drained, task], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            drained.cancel()

    async def wait_closed(self) -> None:
        """Wait until the session ends; raises what ended it unless `close()` did."""
        await self._done.wait()
        if self._error is not None:
            self._is_error_raised = True
            raise self._error

    # -- state -----------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """A WebSocket is open (it may not be synced yet)."""
        return self._ws is not None

    @property
    def websocket(self) -> ClientConnection | None:
        """The current connection (websockets' asyncio client), None while disconnected."""
        return self._ws

    @property
    def is_synced(self) -> bool:
        """This connection has received the server's state (our step 1's answer)."""
        return self._is_synced

    @property
    def is_saved(self) -> bool:
        """Every local edit so far is durable on the server."""
        return self._durability.is_saved

    @property
    def error(self) -> ClientError | None:
        """What ended the session, if something did (None while it runs)."""
        return self._error

    async def connected(self) -> None:
        """Wait until a WebSocket is open (not yet synced)."""
        await self._wait_for(lambda: self._ws is not None)

    async def synced(self) -> None:
        """Wait until the Doc holds the server's state (again, after a reconnect)."""
        await self._wait_for(lambda: self._is_synced)

    async def saved(self) -> None:
        """Wait until every edit made to the Doc so far is durable on the server.
        Across reconnects: an edit made while disconnected is saved after the next sync."""
        durability = self._durability
        deletions = durability.deletions_made
        local_clock = durability.local_clock()
        await self._wait_for(
            lambda: (
                local_clock <= durability.saved_clock() and durability.deletions_saved >= deletions
            )
        )

    async def _confirm_deletions(self) -> None:
        """Per connection: delete-only edits, which move no clock, are confirmed by
        a step 1 / step 2 round trip, since the server answers a step 1 only once
        all it received before is committed. One at a time (the server coalesces
        a step 1 that arrives while its answer to the previous one is waiting);
        one round trip confirms every deletion made before it."""
        durability = self._durability
        outbox = self._outbox
        while True:
            await self._wait_for(
                lambda: durability.deletions_saved < durability.deletions_made and self._is_idle()
            )
            deletions = durability.deletions_made
            assert outbox is not None and self._outbox is outbox
            self._step1_sent += 1
            outbox.put_nowait(encode_sync_step1(self.doc.get_state()))
            await self._wait_for(self._is_idle)  # its answer came
            durability.deletions_saved = max(durability.deletions_saved, deletions)

    def _is_idle(self) -> bool:
        """Synced, with no step 1 of ours waiting for its answer."""
        return self._is_synced and self._step2_received >= self._step1_sent

    def send_frame(self, frame: bytes | str) -> None:
        """Send one frame exactly as given, after what is queued (protocol tests,
        experiments); ignored while disconnected."""
        if self._outbox is not None:
            self._outbox.put_nowait(frame)

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            if self._error is not None:
                self._is_error_raised = True
                raise self._error
            if self._done.is_set():
                raise ClientError("the session is closed")
            await self._progress.wait()

    def _changed(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    def _finish(self, error: ClientError | None) -> None:
        if not self._done.is_set():
            self._error = error
            self.doc.unobserve(self._subscription)
            self._done.set()
            self._changed()

    # -- connections -----------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._is_closing:
            error: ClientError
            try:
                async with websockets.connect(self.url, **self._connect_options()) as ws:
                    await self._serve(ws)
                if self._is_synced_once:
                    failures = 0
                error = closed_error(ws.close_code or ABNORMAL_CLOSURE, ws.close_reason or "")
                self.close_code, self.close_reason = ws.close_code, ws.close_reason
            except websockets.InvalidStatus as exc:
                error = HandshakeFailed(exc.response.status_code, str(exc))
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                error = HandshakeFailed(None, str(exc) or type(exc).__name__)
            except Exception as exc:  # the session's task boundary: end it, say why
                logger.exception("url=%s session failed", self.url)
                self._finish(ClientError(f"the session failed: {exc!r}"))
                return
            if self._is_closing:
                break
            failures += 1
            retries = self._reconnect
            if error.is_permanent or retries is None or retries.gives_up_after(failures):
                logger.warning("url=%s session ends: %s", self.url, error)
                self._finish(error)
                return
            delay_s = retries.delay_s(failures - 1)
            logger.info("url=%s reconnecting in %.2fs after: %s", self.url, delay_s, error)
            await asyncio.sleep(delay_s)
        self._finish(None)

    def _connect_options(self) -> dict[str, Any]:
        options = dict(self._websocket_options)
        if self._token is not None:
            token = self._token() if callable(self._token) else self._token
            headers = dict(options.get("additional_headers") or {})
            headers["Authorization"] = f"Bearer {token}"
            options["additional_headers"] = headers
        return options

    async def _serve(self, ws: ClientConnection) -> None:
        """One connection: handshake, then receive until it closes."""
        self._is_synced_once = False
        outbox: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._ws, self._outbox = ws, outbox
        self._step1_sent, self._step2_received = 1, 0
        self.stats.connections += 1
        outbox.put_nowait(encode_sync_step1(self._durability.server_state()))
        if self.presence.local is not None:
            outbox.put_nowait(encode_awareness(self.presence.encoded()))
        sender = asyncio.create_task(self._send_loop(ws, outbox))
        renewer = asyncio.create_task(self._renew_presence())
        confirmer = asyncio.create_task(self._confirm_deletions())
        try:
            async for frame in ws:
                self._handle(frame)
        except websockets.ConnectionClosed:
            pass
        except ProtocolError as exc:
            logger.warning("url=%s the server sent an undecodable message: %s", self.url, exc)
            await ws.close(exc.close_code, exc.reason)
        finally:
            self._ws = self._outbox = None
            self._is_synced = False
            tasks = (sender, renewer, confirmer)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(
                    asyncio.CancelledError, websockets.ConnectionClosed, ClientError
                ):
                    await task
            self.presence.forget_others()
            self._changed()

    async def _send_loop(self, ws: ClientConnection, outbox: asyncio.Queue[bytes | str]) -> None:
        while True:
            frame = await outbox.get()
            await ws.send(frame)
            outbox.task_done()

    async def _renew_presence(self) -> None:
        while True:
            await asyncio.sleep(self._renew_interval_s)
            payload = self.presence.renew()
            if payload is not None:
                self._send_presence(payload)

    # -- messages --------------------------------------------------------------

    def _handle(self, frame: bytes | str) -> None:
        self.stats.messages_received += 1
        if isinstance(frame, str):
            raise ProtocolError("a text frame from the server")
        match decode_message(frame):
            case SyncStep1(state_vector):
                self.send_frame(encode_sync_step2(self.doc.get_update(state_vector)))
            case SyncStep2(update):
                self._apply_remote(update)
                self._step2_received += 1
                if self._step2_received == 1:
                    self._is_synced = self._is_synced_once = True
            case SyncUpdate(update):
                self.stats.updates_received += 1
                self._apply_remote(update)
            case AwarenessUpdate(payload):
                self.presence.awareness.apply_awareness_update(payload, "remote")
            case QueryAwareness():
                states = list(self.presence.awareness.states)
                if states:
                    self.send_frame(
                        encode_awareness(self.presence.awareness.encode_awareness_update(states))
                    )
            case AuthMessage(payload):
                logger.info("url=%s auth message from the server: %r", self.url, payload[1:])
            case UnknownMessage():
                pass
        self._changed()

    def _apply_remote(self, update: bytes) -> None:
        self._applying_remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self._applying_remote = False
        self._durability.record_from_server(update)

    def _on_local_change(self, event: TransactionEvent) -> None:
        if self._applying_remote:
            return
        self._durability.record_local(event.update)
        self.send_frame(encode_update(event.update))
        self._changed()

    def _send_presence(self, payload: bytes) -> None:
        self.send_frame(encode_awareness(payload))

    def __repr__(self) -> str:
        state = "synced" if self._is_synced else "connected" if self._ws else "disconnected"
        return f"<Session {self.url!r} {state}>"


def connect(
    server_url: str,
    document: str,
    *,
    token: Token | None = None,
    doc: Doc[Any] | None = None,
    reconnect: Reconnect | None = DEFAULT_RECONNECT,
    websocket_options: Mapping[str, Any] | None = None,
) -> Session:
    """A session on `document` of the server at `server_url` (its WebSocket root,
    e.g. "ws://localhost:8000/ws", as y-websocket's `serverUrl`). Use it as
    `async with connect(...) as session:`: entering waits for the first sync.
    `token` (or a function returning a fresh one at each connection) is sent as
    `Authorization: Bearer`. `reconnect=None` ends the session at the first close."""
    return Session(
        f"{server_url.rstrip('/')}/{quote(document, safe='._:-')}",
        doc=doc,
        token=token,
        reconnect=reconnect,
        websocket_options=websocket_options,
    )
