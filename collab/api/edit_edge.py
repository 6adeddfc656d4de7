"""What the HTTP editing routes share (collab.api.editing, collab.api.transfer):
their rate limit, their bounded body, their answer to an edit, and their errors
as HTTP statuses.

- Rate: a token bucket per caller (the token's `sub`, or the client's address
  when there is none), `COLLAB_EDIT_RATE_PER_S` sustained and
  `COLLAB_EDIT_RATE_BURST` above it; a request past it is refused (429 with
  `Retry-After`), never queued: an HTTP caller can retry, and a queue would
  hold its body in memory. At most `_MAX_CALLERS` buckets are kept (the
  oldest go first), so a stranger cycling addresses costs a bounded table.
- Body: read only after the route's access check (FastAPI would read a declared
  body before any dependency), and refused past `COLLAB_EDIT_MAX_BODY_BYTES`
  (413) — by its `Content-Length` before reading a byte, and by its length
  for a chunked one; the edge (collab.api.http_edge) has already bounded it by
  `COLLAB_MAX_REQUEST_BODY_BYTES`.
- Versions: a document's state vector travels as unpadded base64url, in JSON
  (`state_vector`, `base`) and as the `ETag` / `If-Match` of text routes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel, Field

from collab.api.access import ReadGrant
from collab.api.rest import runtime_of
from collab.errors import (
    DeletedHistory,
    DocumentTooLarge,
    InvalidUpdate,
    StorageUnavailable,
)
from collab.history.edits import (
    DocumentEdits,
    DocumentExists,
    EditConflict,
    EditResult,
    MissingDependencies,
)
from collab.history.text_edits import TextEditRefused
from collab.rooms.commit_path import RoomClosed
from collab.storage.store import OpDeclined

_MAX_CALLERS = 10_000


class EditRateLimit:
    """Token buckets per caller; `admit` refuses rather than waits."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(max(burst, 1))
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, stamp

    def admit(self, caller: str) -> float:
        """Take a token for `caller`: 0.0, or the seconds until one is free
        (then nothing was taken). A rate of 0 means no limit."""
        if self._rate <= 0:
            return 0.0
        now = self._clock()
        tokens, stamp = self._buckets.pop(caller, (self._burst, now))
        tokens = min(self._burst, tokens + (now - stamp) * self._rate)
        wait_s = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate
        self._buckets[caller] = (tokens - 1.0 if not wait_s else tokens, now)
        while len(self._buckets) > _MAX_CALLERS:
            self._buckets.popitem(last=False)
        return wait_s


class EditOut(BaseModel):
    document: str
    changed: bool = Field(description="False: the edit changed nothing (nothing was stored)")
    seq: int | None = Field(
        description="The update-log sequence number the edit was stored as; null if unchanged"
    )
    state_vector: str = Field(
        description="The document's state vector right after the edit (base64url); "
        "pass it as `base` or `If-Match` to guard the next edit"
    )

    @classmethod
    def of(cls, document: str, result: EditResult) -> EditOut:
        return cls(
            document=document,
            changed=result.changed,
            seq=result.seq,
            state_vector=encode_version(result.state_vector),
        )


def json_request_body(schema: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body by hand (to bound it
    first): the required body's schema, inlined, and its named examples."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": inline_schema(schema), "examples": examples}
            },
        }
    }


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its `$defs` written in place: a request body read by
    hand is documented through `openapi_extra`, where a `$ref` to a local
    definition would point nowhere in the OpenAPI document."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref", "")
            if reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def encode_version(state_vector: bytes) -> str:
    return base64.urlsafe_b64encode(state_vector).rstrip(b"=").decode("ascii")


def decode_version(version: str) -> bytes:
    """A version from a request (`base`, `If-Match`); 400 if it is not base64url."""
    cleaned = version.strip().removeprefix("W/").strip('"')
    try:
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(400, f"the version is not base64url: {exc}") from exc


def etag(state_vector: bytes) -> str:
    return f'"{encode_version(state_vector)}"'


def edits_of(request: Request) -> DocumentEdits:
    runtime = runtime_of(request)
    return DocumentEdits(runtime.registry, runtime.history)


async def limit_rate(request: Request, grant: ReadGrant) -> None:
    """A dependency: 429 once the caller is past its edit rate. Only callers
    whose token is good get a bucket (the grant is checked first)."""
    client = request.client.host if request.client else "-"
    rate: EditRateLimit = request.app.state.edit_rate
    wait_s = rate.admit(f"sub:{grant.subject}" if grant.subject else f"addr:{client}")
    if wait_s:
        runtime_of(request).metrics.refused("edit_rate")
        raise HTTPException(
            429,
            "too many edits: past COLLAB_EDIT_RATE_PER_S; retry later",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )


EDIT_RATE = Depends(limit_rate)


async def read_body(request: Request) -> bytes:
    """The request's body, at most `COLLAB_EDIT_MAX_BODY_BYTES` (413 past it)."""
    limit = runtime_of(request).settings.edit_max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, _too_large(int(declared), limit))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, _too_large(len(body), limit))
    return bytes(body)


def _too_large(size: int, limit: int) -> str:
    return f"a body of {size} bytes is over {limit} (COLLAB_EDIT_MAX_BODY_BYTES)"


@contextlib.contextmanager
def edit_errors() -> Iterator[None]:
    """The layers' refusals of an edit, as HTTP answers with their reason."""
    try:
        yield
    except InvalidUpdate as exc:
        raise HTTPException(400, str(exc)) from exc
    except DocumentTooLarge as exc:
        raise HTTPException(413, f"{exc} (COLLAB_MAX_DOCUMENT_BYTES)") from exc
    except EditConflict as exc:
        raise HTTPException(412, str(exc)) from exc
    except TextEditRefused as exc:
        raise HTTPException(422, str(exc)) from exc
    except (DocumentExists, MissingDependencies, DeletedHistory) as exc:
        raise HTTPException(409, str(exc)) from exc
    except OpDeclined as exc:
        raise HTTPException(409, f"the document was deleted meanwhile: {exc}") from exc
    except (StorageUnavailable, RoomClosed) as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from exc
