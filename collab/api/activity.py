"""REST endpoints for attribution: /api/documents/{name}/activity and /blame.

Part of the API layer: translates HTTP to `DocumentActivity` calls and back
(collab.history.activity). Times go out as ISO 8601 (UTC) and come in as ISO
8601 or Unix seconds. Both need read access, like the versions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from collab.api.access import READ_ACCESS, AdminGrant, author_of
from collab.api.rest import AUTH_ERRORS, NOT_FOUND, DocumentName, runtime_of, timestamp
from collab.history.activity import ActivityEvent, ActivityQuery, NothingToRevert
from collab.history.restore import RestoreConflict
from collab.history.versions import VersionTooLarge
from collab.history.workers import ComputeBusy, ComputeFailed

router = APIRouter(prefix="/api/documents", tags=["attribution"], dependencies=[READ_ACCESS])


class AuthorOut(BaseModel):
    author: str = Field(description='The token\'s `sub`, or "anonymous" on an open server')
    name: str | None = Field(description="The name the client announced (`user.name`)")
    verified: bool = Field(description="True when `author` comes from a verified token")


class RootCountOut(BaseModel):
    inserted: int = Field(description="Characters (Yjs clock units) written into this text root")
    deleted: int = Field(description="Characters deleted from it")


class SessionOut(AuthorOut):
    kind: Literal["session"] = "session"
    id: int = Field(description="The session's key (for undoing it)")
    origin: Literal["edit", "restore", "revert"]
    start: datetime
    end: datetime
    inserted: int = Field(description="Characters (Yjs clock units) created")
    deleted: int = Field(description="Characters deleted")
    restored_version: int | None = Field(
        default=None,
        description="A restore's: the version it restored; a revert's: the version "
        "the text it brought back was read from",
    )
    roots: dict[str, RootCountOut] = Field(
        default_factory=dict,
        description="The counts per text root (empty for sessions stored before they were kept)",
    )


class VersionEventOut(BaseModel):
    kind: Literal["version"] = "version"
    id: int
    at: datetime
    version_kind: Literal["auto", "named", "pre-restore"]
    label: str | None
    author: str | None


class ActivityPage(BaseModel):
    events: list[SessionOut | VersionEventOut] = Field(description="Newest first")
    next_before: datetime | None = Field(
        description="Pass as ?before= for the next page; null on the last page"
    )


class BlameRunOut(BaseModel):
    text: str
    author: str | None = Field(description="null: made before attribution was recorded")
    name: str | None
    verified: bool | None
    at: datetime | None = Field(description="When the session that wrote it ended")


class BlameOut(BaseModel):
    document: str
    text_roots: dict[str, list[BlameRunOut]]


class RevertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    author: str | None = Field(
        default=None, min_length=1, max_length=200, description="Undo this subject's sessions"
    )
    session: int | None = Field(default=None, description="Undo this one session (its `id`)")
    since: str | None = Field(default=None, description="ISO 8601 or Unix seconds")
    until: str | None = Field(default=None, description="ISO 8601 or Unix seconds")
    name: str | None = Field(
        default=None,
        max_length=200,
        description="Who reverts, on a server without tokens (with tokens: the token's `sub`)",
    )

    @model_validator(mode="after")
    def _names_what(self) -> RevertIn:
        if self.author is None and self.session is None:
            raise ValueError("give an author or a session")
        return self


class RevertOut(BaseModel):
    document: str
    pre_revert_snapshot_id: int = Field(description="Restore it to undo this revert")
    sessions: int = Field(description="How many editing sessions were undone")
    changed: bool
    deletions_restored: bool = Field(
        description="Whether all the text the author deleted came back (false: see the reason)"
    )
    deletions_not_restored_reason: str | None = Field(
        default=None, description="Why some deleted text did not come back"
    )
    restored_characters: int = Field(description="Characters of deleted text brought back")
    restored_from_version: int | None = Field(
        default=None, description="The version the deleted text was read from"
    )


def _when(value: str | None, field: str) -> float | None:
    """ISO 8601 or Unix seconds."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise HTTPException(422, f"{field}: not an ISO 8601 time or Unix seconds") from exc


def _event_out(event: ActivityEvent) -> SessionOut | VersionEventOut:
    if event.session is not None:
        s = event.session
        return SessionOut(
            id=s.key,
            author=s.author.subject,
            name=s.author.name,
            verified=s.author.is_verified,
            origin=s.origin,  # type: ignore[arg-type]
            start=timestamp(s.started_at),
            end=timestamp(s.ended_at),
            inserted=s.inserted,
            deleted=s.deleted,
            restored_version=s.source_version,
            roots={
                root: RootCountOut(inserted=inserted, deleted=deleted)
                for root, inserted, deleted in s.roots
            },
        )
    assert event.version is not None
    v = event.version
    return VersionEventOut(
        id=v.id,
        at=timestamp(v.created_at),
        version_kind=v.kind.value,
        label=v.label,
        author=v.author,
    )


@router.get(
    "/{name}/activity",
    response_model=ActivityPage,
    responses={**NOT_FOUND, **AUTH_ERRORS},
)
async def get_activity(
    name: DocumentName,
    request: Request,
    since: Annotated[str | None, Query(description="ISO 8601 or Unix seconds")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 or Unix seconds")] = None,
    author: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[str | None, Query(description="next_before of the previous page")] = None,
) -> ActivityPage:
    """The document's timeline: editing sessions (who, when, how much) and
    versions and restores, newest first."""
    query = ActivityQuery(
        since=_when(since, "since"),
        until=_when(until, "until"),
        author=author,
        limit=limit,
        before=_when(before, "before"),
    )
    events = await runtime_of(request).history.activity.activity(name, query)
    page, more = events[:limit], len(events) > limit
    return ActivityPage(
        events=[_event_out(e) for e in page],
        next_before=timestamp(page[-1].at) if more and page else None,
    )


@router.get(
    "/{name}/blame",
    response_model=BlameOut,
    responses={**NOT_FOUND, **AUTH_ERRORS, 429: {"description": "Every compute worker is busy"}},
)
async def get_blame(name: DocumentName, request: Request) -> BlameOut:
    """Each text root's current content as runs: who wrote it and when."""
    try:
        roots = await runtime_of(request).history.activity.blame(name)
    except ComputeBusy as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": "1"}) from exc
    return BlameOut(
        document=name,
        text_roots={
            root: [
                BlameRunOut(
                    text=run["text"],
                    author=run["author"],
                    name=run["name"],
                    verified=run["verified"],
                    at=None if run["at"] is None else timestamp(run["at"]),
                )
                for run in runs
            ]
            for root, runs in roots.items()
        },
    )


@router.post(
    "/{name}/revert",
    response_model=RevertOut,
    responses={
        **NOT_FOUND,
        **AUTH_ERRORS,
        404: {"description": "No such document or session"},
        409: {"description": "The document was deleted while the revert was computed"},
        503: {"description": "A compute worker died: retry"},
    },
)
async def revert(
    name: DocumentName, body: RevertIn, request: Request, grant: AdminGrant
) -> RevertOut:
    """Needs the admin role. Undoes what an author did in a window (or one
    session): their text still present is deleted and the text they deleted
    comes back (read from the newest version from before), as new operations,
    after a pre-restore version; everyone else's edits stay. Attributed to who
    asks."""
    try:
        result = await runtime_of(request).history.activity.revert(
            name,
            actor=author_of(grant, body.name),
            author=body.author,
            session=body.session,
            since=_when(body.since, "since"),
            until=_when(body.until, "until"),
        )
    except NothingToRevert as exc:
        raise HTTPException(404, str(exc)) from exc
    except RestoreConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    except ComputeFailed as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from exc
    return RevertOut(
        document=name,
        pre_revert_snapshot_id=result.pre_revert_id,
        sessions=result.sessions,
        changed=result.changed,
        deletions_restored=result.deletions_missing is None,
        deletions_not_restored_reason=result.deletions_missing,
        restored_characters=result.restored_chars,
        restored_from_version=result.source_version,
    )


@router.get(
    "/{name}/diff",
    responses={
        **NOT_FOUND,
        **AUTH_ERRORS,
        200: {"description": "Same shape as the snapshot diff (`DiffOut`)"},
        413: {"description": "A version beyond COLLAB_DIFF_MAX_BYTES"},
        429: {"description": "Every compute worker is busy: retry shortly"},
    },
)
async def diff_between(
    name: DocumentName,
    request: Request,
    from_: Annotated[
        str,
        Query(
            alias="from",
            max_length=64,
            description="A version id or a time (ISO 8601, Unix seconds): the newest "
            "version captured at or before it",
        ),
    ],
    to: Annotated[str, Query(max_length=64, description="Likewise, or `current`")] = "current",
) -> Response:
    """The attributed diff between two versions or two times."""
    history = runtime_of(request).history
    old = await history.resolve_version(name, from_)
    new = await history.resolve_version(name, to)
    if old == "current":
        raise HTTPException(422, "from: name a version or a time, not current")
    try:
        body = await history.diff(name, old, new)
    except ComputeBusy as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": "1"}) from exc
    except VersionTooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    except ComputeFailed as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from exc
    return Response(body, media_type="application/json")
