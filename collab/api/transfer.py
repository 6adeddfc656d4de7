"""REST endpoints that move a document's content in and out: import
(POST /api/documents), copy (POST /api/documents/{name}/copy) and export
(GET /api/documents/{name}/export).

An import or a copy makes a new document through its room like any edit
(collab.history.edits); both refuse a name that exists (409). An export reads
what is durable (`RoomRegistry.read_state`) and renders it off the event loop:
Markdown and text are the text root as it is, HTML is rendered like the
editor's preview and sanitised (collab.history.export), JSON is the same
content as GET /api/documents/{name}.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from collab.api.access import READ_ACCESS, ReadGrant, WriteGrant, author_of
from collab.api.edit_edge import (
    EDIT_RATE,
    EditOut,
    edit_errors,
    edits_of,
    inline_schema,
    read_body,
)
from collab.api.editing import DEFAULT_ROOT, TextRootQuery
from collab.api.rest import AUTH_ERRORS, NOT_FOUND, DocumentName, ErrorBody, runtime_of
from collab.auth.policy import AuthFailure, Forbidden, Grant, Role
from collab.errors import DocumentNotFound
from collab.history.export import MEDIA_TYPES, ExportFormat, export_document
from collab.protocol.names import DOCUMENT_NAME_MAX_CHARS, DOCUMENT_NAME_PATTERN

_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]")

NewName = Annotated[str, Field(pattern=DOCUMENT_NAME_PATTERN, max_length=DOCUMENT_NAME_MAX_CHARS)]


class ImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: NewName
    content: str = Field(min_length=1, description="The text, as it will read")
    format: Literal["markdown", "text"] = Field(
        default="markdown",
        description="What the content is; both are stored as the text itself",
    )
    root: str = Field(
        default=DEFAULT_ROOT, min_length=1, max_length=256, description="The text root"
    )


class CopyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: NewName = Field(description="The new document's name; 409 if it exists")
    version: int | None = Field(
        default=None, ge=1, description="A snapshot id to copy; omitted: the current state"
    )


T = TypeVar("T")
_IMPORT_BODY = TypeAdapter(ImportIn)
_COPY_BODY = TypeAdapter(CopyIn)
_NEW_DOCUMENT_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "A document of that name exists"},
    413: {
        "model": ErrorBody,
        "description": "Past COLLAB_EDIT_MAX_BODY_BYTES or the document limit",
    },
    422: {"model": ErrorBody, "description": "A malformed body, or nothing to store"},
    429: {"model": ErrorBody, "description": "Past COLLAB_EDIT_RATE_PER_S: retry later"},
}

router = APIRouter(tags=["transfer"], responses=AUTH_ERRORS)


@router.post(
    "/api/documents",
    response_model=EditOut,
    status_code=201,
    responses=_NEW_DOCUMENT_ERRORS,
    dependencies=[EDIT_RATE],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": inline_schema(ImportIn.model_json_schema()),
                    "examples": {
                        "markdown": {
                            "summary": "A Markdown document",
                            "value": {
                                "name": "notes",
                                "content": "# Notes\n",
                                "format": "markdown",
                            },
                        }
                    },
                }
            },
        }
    },
)
async def import_document(request: Request, grant: WriteGrant) -> EditOut:
    """A new document whose text reads `content`. Needs the write role on `name`."""
    body = _parse(_IMPORT_BODY, await read_body(request))
    _require_write(grant, body.name)
    with edit_errors():
        result = await edits_of(request).create(
            body.name, body.root, body.content, author=author_of(grant)
        )
    return EditOut.of(body.name, result)


@router.post(
    "/api/documents/{name}/copy",
    response_model=EditOut,
    status_code=201,
    responses={**NOT_FOUND, **_NEW_DOCUMENT_ERRORS},
    dependencies=[EDIT_RATE],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": inline_schema(CopyIn.model_json_schema()),
                    "examples": {
                        "current": {"summary": "The current state", "value": {"to": "notes-copy"}},
                        "version": {
                            "summary": "A saved version",
                            "value": {"to": "notes-v3", "version": 3},
                        },
                    },
                }
            },
        }
    },
)
async def copy_document(name: DocumentName, request: Request, grant: ReadGrant) -> EditOut:
    """A new document `to` with this one's content (now, or of a version), as
    new operations. Needs read access here and the write role on `to`."""
    body = _parse(_COPY_BODY, await read_body(request))
    _require_write(grant, body.to)
    with edit_errors():
        result = await edits_of(request).copy(
            name, body.to, version=body.version, author=author_of(grant)
        )
    return EditOut.of(body.to, result)


@router.get(
    "/api/documents/{name}/export",
    response_class=Response,
    responses={
        200: {
            "description": "The document as a file (`Content-Disposition: attachment`)",
            "content": {
                "text/markdown": {"example": "# Notes\n"},
                "text/html": {"example": "<!doctype html>…<h1>Notes</h1>…"},
                "text/plain": {"example": "# Notes\n"},
                "application/json": {
                    "example": {"name": "notes", "content": {"content": "# Notes\n"}}
                },
            },
        },
        **NOT_FOUND,
        422: {"model": ErrorBody, "description": "The root is no text"},
        429: {"model": ErrorBody, "description": "Past COLLAB_EDIT_RATE_PER_S: retry later"},
    },
    dependencies=[READ_ACCESS, EDIT_RATE],
)
async def get_export(
    name: DocumentName,
    request: Request,
    format: Annotated[ExportFormat, Query(description="The file's format")] = "markdown",
    root: TextRootQuery = DEFAULT_ROOT,
) -> Response:
    """What is durable now, as a file. HTML is rendered like the editor's
    Markdown preview and sanitised with the same rules."""
    runtime = runtime_of(request)
    state = await runtime.registry.read_state(name)
    if state is None:
        raise DocumentNotFound(name)
    media_type, extension = MEDIA_TYPES[format]
    with edit_errors():
        body = await asyncio.to_thread(
            export_document,
            state,
            name,
            format,
            root,
            allow_remote_images=runtime.settings.allow_remote_images,
        )
    filename = f"{safe_filename(name)}.{extension}"
    return Response(
        body.encode("utf-8"),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def safe_filename(name: str) -> str:
    """A document name as a file name any system takes: letters, digits, `.`,
    `_` and `-`, never hidden (no leading dot)."""
    return _UNSAFE_IN_FILENAME.sub("_", name).lstrip(".") or "document"


def _require_write(grant: Grant, document: str) -> None:
    """The write role on a document named in the body (not the path)."""
    if not grant.covers(document):
        raise Forbidden(AuthFailure.DOCUMENT_NOT_IN_SCOPE, f"the token does not cover {document!r}")
    if not grant.role.includes(Role.WRITE):
        raise Forbidden(
            AuthFailure.INSUFFICIENT_ROLE, f"needs the write role; the token grants {grant.role}"
        )


def _parse(adapter: TypeAdapter[T], body: bytes) -> T:
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        raise HTTPException(
            422, f"{where}: {error['msg']}" if where else str(error["msg"])
        ) from None
