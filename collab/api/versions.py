"""REST endpoints for version history: /api/documents/{name}/snapshots/...

Part of the API layer: translates HTTP to `VersionHistory`
calls and back; the rules live in collab.history.versions. A diff's body is
encoded by the compute worker that computed it (collab.history.compare); its
refusals (429 busy, 413 too large) carry their reason in `detail`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collab.api.access import (
    READ_ACCESS,
    AdminGrant,
    WriteGrant,
    acting_subject,
    author_of,
)
from collab.api.rest import (
    AUTH_ERRORS,
    NOT_FOUND,
    DocumentName,
    ErrorBody,
    runtime_of,
    timestamp,
)
from collab.content import render_content
from collab.history.restore import RestoreConflict
from collab.history.versions import VersionTooLarge
from collab.history.workers import ComputeBusy, ComputeFailed
from collab.storage.store import SnapshotInfo

MAX_ID = 2**63 - 1  # BIGINT
SnapshotId = Annotated[int, Path(ge=1, le=MAX_ID, description="A snapshot id from the listing")]


class SnapshotOut(BaseModel):
    id: int
    document: str
    created_at: datetime
    updated_at: datetime = Field(
        description="When its state was captured (an automatic version absorbs the "
        "compactions of its window)"
    )
    kind: Literal["auto", "named", "pre-restore"]
    label: str | None
    author: str | None
    size_bytes: int
    preview: str = Field(description="The start of the document's text")

    @classmethod
    def of(cls, info: SnapshotInfo) -> SnapshotOut:
        return cls(
            id=info.id,
            document=info.document,
            created_at=timestamp(info.created_at),
            updated_at=timestamp(info.updated_at),
            kind=info.kind.value,
            label=info.label,
            author=info.author,
            size_bytes=info.size_bytes,
            preview=info.preview,
        )


class SnapshotPage(BaseModel):
    snapshots: list[SnapshotOut] = Field(description="Newest first")
    next_before: int | None = Field(
        description="Pass as ?before= for the next page; null on the last page"
    )


class SaveSnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=200)
    author: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Used only by a server without tokens; with tokens the author is "
        "the token's `sub`, and this is ignored",
    )


class SnapshotContent(BaseModel):
    name: str
    content: dict[str, Any] = Field(description="Same shape as GET /api/documents/{name}")
    snapshot: SnapshotOut


class HunkOut(BaseModel):
    op: Literal["equal", "delete", "insert"]
    text: str
    old_start: int = Field(description="Offset (characters) in the snapshot's text")
    new_start: int = Field(description="Offset (characters) in the text compared against")
    authors: list[str | None] = Field(
        default_factory=list,
        description="Who wrote the hunk's text (a delete's: who wrote what was deleted); "
        "null for text older than attribution",
    )


class TextRootDiffOut(BaseModel):
    root: str
    inserted_chars: int
    deleted_chars: int
    hunks: list[HunkOut] = Field(
        description="In order; equal+delete hunks spell the old text, equal+insert the new"
    )


class DiffOut(BaseModel):
    document: str
    snapshot_id: int
    against: int | Literal["current"]
    text_roots: list[TextRootDiffOut]
    other_changed_roots: list[str] = Field(description="Map and array roots that differ")


class RestoreOut(BaseModel):
    document: str
    restored_snapshot_id: int
    pre_restore_snapshot_id: int = Field(description="Restore this one to undo the restore")
    changed: bool


router = APIRouter(
    prefix="/api/documents/{name}/snapshots", tags=["versions"], responses=AUTH_ERRORS
)


@router.get("", response_model=SnapshotPage, responses=NOT_FOUND, dependencies=[READ_ACCESS])
async def list_snapshots(
    name: DocumentName,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only ids below this")] = None,
) -> SnapshotPage:
    versions = await runtime_of(request).history.list_versions(name, limit=limit, before_id=before)
    return SnapshotPage(
        snapshots=[SnapshotOut.of(v) for v in versions],
        next_before=versions[-1].id if len(versions) == limit else None,
    )


async def read_save_request(request: Request) -> SaveSnapshotIn:
    """The body of a save, read only now: FastAPI reads and parses a declared
    body parameter before it runs any dependency, so a request without a token
    would cost its whole upload before it is refused. The route asks for the
    grant first; the body is bounded by the edge (collab.api.http_edge)."""
    try:
        return SaveSnapshotIn.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


@router.post(
    "",
    response_model=SnapshotOut,
    status_code=201,
    responses=NOT_FOUND,
    # The body is read by hand (read_save_request); the schema still shows it.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SaveSnapshotIn.model_json_schema()}},
        }
    },
)
async def save_snapshot(name: DocumentName, request: Request, grant: WriteGrant) -> SnapshotOut:
    """Needs the write role. With tokens, the author is the token's `sub`."""
    body = await read_save_request(request)
    info = await runtime_of(request).history.save_version(
        name, label=body.label, author=acting_subject(request, grant, body.author)
    )
    return SnapshotOut.of(info)


@router.get(
    "/{snapshot_id}",
    response_model=SnapshotContent,
    responses=NOT_FOUND,
    dependencies=[READ_ACCESS],
)
async def get_snapshot(
    name: DocumentName, snapshot_id: SnapshotId, request: Request
) -> SnapshotContent:
    snapshot = await runtime_of(request).history.get_version(name, snapshot_id)
    content = await asyncio.to_thread(render_content, snapshot.state)
    return SnapshotContent(name=name, content=content, snapshot=SnapshotOut.of(snapshot.info))


@router.get(
    "/{snapshot_id}/update",
    response_class=Response,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "The snapshot's full state as a Yjs update (v1)",
        },
        **NOT_FOUND,
    },
    dependencies=[READ_ACCESS],
)
async def get_snapshot_update(
    name: DocumentName, snapshot_id: SnapshotId, request: Request
) -> Response:
    snapshot = await runtime_of(request).history.get_version(name, snapshot_id)
    return Response(snapshot.state, media_type="application/octet-stream")


@router.get(
    "/{snapshot_id}/diff",
    response_model=DiffOut,
    responses={
        **NOT_FOUND,
        413: {"model": ErrorBody, "description": "A version beyond COLLAB_DIFF_MAX_BYTES"},
        429: {"model": ErrorBody, "description": "Every compute worker is busy: retry shortly"},
        503: {"model": ErrorBody, "description": "A compute worker died: retry"},
    },
    dependencies=[READ_ACCESS],
)
async def diff_snapshot(
    name: DocumentName,
    snapshot_id: SnapshotId,
    request: Request,
    against: Annotated[
        str,
        Query(
            pattern=r"^(current|[1-9][0-9]{0,17})$",
            description="`current` or another snapshot id; the snapshot is the old side",
        ),
    ] = "current",
) -> Response:
    """Computed in a worker process, which also encodes the body (see
    collab.history.compare); `DiffOut` documents its shape."""
    other: int | Literal["current"] = "current" if against == "current" else int(against)
    with _heavy_work_errors():
        body = await runtime_of(request).history.diff(name, snapshot_id, other)
    return Response(body, media_type="application/json")


@router.post(
    "/{snapshot_id}/restore",
    response_model=RestoreOut,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "The document was deleted meanwhile"},
        503: {"model": ErrorBody, "description": "A compute worker died: retry"},
    },
)
async def restore_snapshot(
    name: DocumentName, snapshot_id: SnapshotId, request: Request, grant: AdminGrant
) -> RestoreOut:
    """Needs the admin role. The pre-restore version records who restored (the
    token's `sub`) as its author."""
    with _heavy_work_errors():
        result = await runtime_of(request).history.restore(
            name,
            snapshot_id,
            actor=acting_subject(request, grant),
            author=author_of(grant),
        )
    return RestoreOut(
        document=name,
        restored_snapshot_id=snapshot_id,
        pre_restore_snapshot_id=result.pre_restore_id,
        changed=result.changed,
    )


@contextlib.contextmanager
def _heavy_work_errors() -> Iterator[None]:
    """The history's refusals of heavy work, as HTTP answers with their reason."""
    try:
        yield
    except ComputeBusy as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": "1"}) from exc
    except VersionTooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    except RestoreConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    except ComputeFailed as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from exc
