"""REST endpoints for documents and access: /api/access, /api/documents[/{name}].

Translates HTTP to registry and store calls and back; the response models make
the OpenAPI schema accurate. Version history has its own routes
(collab.api.versions).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from collab.api.access import ADMIN_ACCESS, READ_ACCESS, ReadGrant, access_of
from collab.api.rest import AUTH_ERRORS, NOT_FOUND, DocumentName, runtime_of, timestamp
from collab.content import render_content
from collab.errors import DocumentNotFound
from collab.storage.store import DocumentInfo

router = APIRouter()


class PresentUserOut(BaseModel):
    name: str = Field(
        description="Without control or format characters, whitespace collapsed, "
        "at most 100 characters"
    )
    color: str = Field(
        description="The colour the person's editor shows them in, #rrggbb ('' if none or invalid)"
    )


class DocumentSummary(BaseModel):
    name: str
    created_at: datetime | None = Field(description="None for a live document not yet stored")
    updated_at: datetime | None
    size_bytes: int = Field(description="Latest snapshot plus the update log after it")
    live_connections: int
    present: list[PresentUserOut] = Field(
        description="Who is in it now: the awareness states' `user` {name, color} "
        "(the y-codemirror convention), one per distinct name and colour"
    )


class AccessOut(BaseModel):
    auth_required: bool = Field(description="False: the server is open to anyone")
    role: Literal["read", "write", "admin"]
    documents: list[str] = Field(description="Names, PREFIX* patterns, or * for all")
    subject: str | None
    expires_at: datetime | None


class DocumentContent(BaseModel):
    name: str
    content: dict[str, Any] = Field(
        description=(
            "Each root by inferred type: Y.Map -> object, Y.Text -> string, "
            "Y.Array -> list, nested types recursively; an empty root -> ''."
        )
    )


@router.get("/api/access", response_model=AccessOut, responses=AUTH_ERRORS, tags=["access"])
async def get_access(grant: ReadGrant, request: Request) -> AccessOut:
    """What the request's token allows (an editor shows read-only mode from this)."""
    return AccessOut(
        auth_required=not access_of(request).is_open,
        role=grant.role.value,
        documents=list(grant.documents),
        subject=grant.subject,
        expires_at=None if grant.expires_at is None else timestamp(grant.expires_at),
    )


@router.get(
    "/api/documents",
    response_model=list[DocumentSummary],
    responses=AUTH_ERRORS,
    tags=["documents"],
)
async def list_documents(grant: ReadGrant, request: Request) -> list[DocumentSummary]:
    """The documents the token covers (all of them on an open server)."""
    runtime = runtime_of(request)
    registry = runtime.registry

    def summary(name: str, info: DocumentInfo | None) -> DocumentSummary:
        return DocumentSummary(
            name=name,
            created_at=timestamp(info.created_at) if info else None,
            updated_at=timestamp(info.updated_at) if info else None,
            size_bytes=info.size_bytes if info else 0,
            live_connections=registry.live_connections(name),
            present=[
                PresentUserOut(name=user.name, color=user.color)
                for user in registry.present_users(name)
            ],
        )

    stored = {info.name: info for info in await runtime.store.list_documents()}
    live = {name for name, room in registry.rooms.items() if room.peers}
    names = sorted(name for name in stored.keys() | live if grant.covers(name))
    return [summary(name, stored.get(name)) for name in names]


@router.get(
    "/api/documents/{name}",
    response_model=DocumentContent,
    responses=NOT_FOUND | AUTH_ERRORS,
    tags=["documents"],
    dependencies=[READ_ACCESS],
)
async def get_document(name: DocumentName, request: Request) -> DocumentContent:
    state = await runtime_of(request).registry.read_state(name)
    if state is None:
        raise DocumentNotFound(name)  # one 404 shape: the app's handler
    content = await asyncio.to_thread(render_content, state)
    return DocumentContent(name=name, content=content)


@router.delete(
    "/api/documents/{name}",
    status_code=204,
    responses=NOT_FOUND | AUTH_ERRORS,
    tags=["documents"],
    dependencies=[ADMIN_ACCESS],
)
async def delete_document(name: DocumentName, request: Request) -> Response:
    if not await runtime_of(request).registry.delete(name):
        raise DocumentNotFound(name)  # one 404 shape: the app's handler
    return Response(status_code=204)
