"""REST endpoints that edit a live document: a binary update, a text delta, a
replaced text (/api/documents/{name}/updates, /text/{root}, /content).

Translates HTTP to `DocumentEdits` (collab.history.edits holds the rules: through
the live room, durable before relayed, answered once committed) and back. Every
route checks access first, then its caller's edit rate, then reads its body by
hand (collab.api.edit_edge). The author of an edit is the token's `sub`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from collab.api.access import READ_ACCESS, WriteGrant, author_of
from collab.api.edit_edge import (
    EDIT_RATE,
    EditOut,
    decode_version,
    edit_errors,
    edits_of,
    encode_version,
    etag,
    inline_schema,
    read_body,
)
from collab.api.rest import AUTH_ERRORS, NOT_FOUND, DocumentName, ErrorBody, runtime_of
from collab.errors import DocumentNotFound
from collab.history.edits import get_state_of
from collab.history.export import document_text
from collab.history.text_edits import Delete, DeltaOp, Insert, Retain
from collab.protocol.codec import decode_state_vector

DEFAULT_ROOT = "content"  # the text root the browser editor edits
MAX_DELTA_OPS = 10_000

RootName = Annotated[
    str, Path(min_length=1, max_length=256, description="A text root of the document")
]
TextRootQuery = Annotated[
    str,
    Query(min_length=1, max_length=256, description="The text root (the editor's: `content`)"),
]


class RetainOp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retain: int = Field(ge=0, description="Characters (Unicode code points) to keep")


class InsertOp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    insert: str


class DeleteOp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delete: int = Field(ge=0, description="Characters (Unicode code points) to delete")


DeltaIn = Annotated[list[RetainOp | InsertOp | DeleteOp], Field(max_length=MAX_DELTA_OPS)]


class TextPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delta: DeltaIn
    base: str | None = Field(
        default=None,
        description="The state vector the delta is based on (from GET .../text/{root} or "
        "an edit's answer); 412 if the document changed since",
    )


class ContentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str
    base: str | None = Field(default=None, description="As in PATCH .../text/{root}")


class TextOut(BaseModel):
    document: str
    root: str
    text: str = Field(description="The root's characters (embeds left out)")
    state_vector: str = Field(description="The version this text is; also the ETag")


_PATCH_BODY: TypeAdapter[list[RetainOp | InsertOp | DeleteOp] | TextPatchIn] = TypeAdapter(
    DeltaIn | TextPatchIn
)
_CONTENT_BODY = TypeAdapter(ContentIn)

_EDIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    400: {"model": ErrorBody, "description": "Not a Yjs update, or a malformed version"},
    409: {
        "model": ErrorBody,
        "description": "The update depends on operations the document lacks, carries a "
        "deleted document's history, or the document was deleted meanwhile",
    },
    412: {"model": ErrorBody, "description": "The document changed since the given version"},
    413: {
        "model": ErrorBody,
        "description": "Body past COLLAB_EDIT_MAX_BODY_BYTES, or the document would pass "
        "COLLAB_MAX_DOCUMENT_BYTES",
    },
    422: {"model": ErrorBody, "description": "An index past the end, or a root that is no text"},
    429: {"model": ErrorBody, "description": "Past COLLAB_EDIT_RATE_PER_S: retry later"},
    503: {"model": ErrorBody, "description": "Storage is failing: retry"},
}

router = APIRouter(prefix="/api/documents/{name}", tags=["editing"], responses=AUTH_ERRORS)


@router.post(
    "/updates",
    response_model=EditOut,
    responses=_EDIT_ERRORS,
    dependencies=[EDIT_RATE],
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A Yjs update (v1 encoding), as `Y.encodeStateAsUpdate` or a "
            "Doc's update event gives it",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def post_update(name: DocumentName, request: Request, grant: WriteGrant) -> EditOut:
    """Applied like a client's edit: stored, then relayed to the connected
    clients, and answered once committed. Needs the write role."""
    body = await read_body(request)
    if not body:
        raise HTTPException(400, "the body is empty: send a Yjs update (v1)")
    with edit_errors():
        result = await edits_of(request).apply_update(name, body, author=author_of(grant))
    return EditOut.of(name, result)


@router.get(
    "/text/{root}",
    response_model=TextOut,
    responses={**NOT_FOUND, 422: {"model": ErrorBody, "description": "The root is no text"}},
    dependencies=[READ_ACCESS],
)
async def get_text(name: DocumentName, root: RootName, request: Request) -> Response:
    """One text root and the version it is (also its `ETag`), to base an edit on."""
    state = await runtime_of(request).registry.read_state(name)
    if state is None:
        raise DocumentNotFound(name)
    with edit_errors():
        text = await asyncio.to_thread(document_text, state, root)
    state_vector = await asyncio.to_thread(get_state_of, state)
    body = TextOut(document=name, root=root, text=text, state_vector=encode_version(state_vector))
    return Response(
        body.model_dump_json(), media_type="application/json", headers={"ETag": etag(state_vector)}
    )


@router.patch(
    "/text/{root}",
    response_model=EditOut,
    responses=_EDIT_ERRORS,
    dependencies=[EDIT_RATE],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": inline_schema(_PATCH_BODY.json_schema()),
                    "examples": {
                        "delta": {
                            "summary": "Insert after the first 6 characters, delete 3",
                            "value": [{"retain": 6}, {"insert": "brave "}, {"delete": 3}],
                        },
                        "guarded": {
                            "summary": "Append, only if nobody changed it since",
                            "value": {
                                "delta": [{"retain": 12}, {"insert": "!"}],
                                "base": "AQLmxd4CBQ",
                            },
                        },
                    },
                }
            },
        }
    },
)
async def patch_text(
    name: DocumentName,
    root: RootName,
    request: Request,
    grant: WriteGrant,
    if_match: Annotated[
        str | None,
        Header(description="The version the edit is based on (an ETag); 412 if it changed"),
    ] = None,
) -> EditOut:
    """Text edits by index, in the Yjs delta shape (positions in Unicode code
    points). Applied all or nothing; an index past the end is refused (422)."""
    try:
        patch = _PATCH_BODY.validate_json(await read_body(request))
    except ValidationError as exc:
        raise HTTPException(422, _first_error(exc)) from None
    delta, base = (patch.delta, patch.base) if isinstance(patch, TextPatchIn) else (patch, None)
    with edit_errors():
        result = await edits_of(request).edit_text(
            name,
            root,
            [_delta_op(op) for op in delta],
            base=_base(base, if_match),
            author=author_of(grant),
        )
    return EditOut.of(name, result)


@router.put(
    "/content",
    response_model=EditOut,
    responses={**_EDIT_ERRORS, 415: {"model": ErrorBody, "description": "Another media type"}},
    dependencies=[EDIT_RATE],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/markdown": {"schema": {"type": "string"}, "example": "# Plan\n\n- ship it\n"},
                "text/plain": {"schema": {"type": "string"}, "example": "Plain words."},
                "application/json": {
                    "schema": inline_schema(ContentIn.model_json_schema()),
                    "example": {"content": "# Plan\n", "base": "AQLmxd4CBQ"},
                },
            },
        }
    },
)
async def put_content(
    name: DocumentName,
    request: Request,
    grant: WriteGrant,
    root: TextRootQuery = DEFAULT_ROOT,
    if_match: Annotated[
        str | None,
        Header(description="The version the content replaces (an ETag); 412 if it changed"),
    ] = None,
) -> EditOut:
    """Make a text root read the body (Markdown or plain text), as minimal edits:
    unchanged text keeps its identity, so the cursors of the people editing stay
    put (as in a restore)."""
    body = await read_body(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    base: str | None = None
    if media_type in ("text/markdown", "text/plain", ""):
        try:
            content = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HTTPException(400, f"the body is not UTF-8: {exc}") from None
    elif media_type == "application/json":
        try:
            parsed = _CONTENT_BODY.validate_json(body)
        except ValidationError as exc:
            raise HTTPException(422, _first_error(exc)) from None
        content, base = parsed.content, parsed.base
    else:
        raise HTTPException(415, "send text/markdown, text/plain or application/json")
    with edit_errors():
        result = await edits_of(request).replace_text(
            name, root, content, base=_base(base, if_match), author=author_of(grant)
        )
    return EditOut.of(name, result)


def _delta_op(op: RetainOp | InsertOp | DeleteOp) -> DeltaOp:
    if isinstance(op, RetainOp):
        return Retain(op.retain)
    if isinstance(op, DeleteOp):
        return Delete(op.delete)
    return Insert(op.insert)


def _base(base: str | None, if_match: str | None) -> bytes | None:
    version = base if base is not None else if_match
    if version is None or version.strip() == "*":
        return None
    state_vector = decode_version(version)
    try:
        decode_state_vector(state_vector)
    except ValueError as exc:
        raise HTTPException(400, f"the version is not a state vector: {exc}") from None
    return state_vector


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
