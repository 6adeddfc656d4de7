"""REST endpoints for revoking tokens: /api/tokens/revocations.

Part of the API layer: translates HTTP to `Revocations` calls and back; what a
revocation covers is collab.auth.revocation's rule, how it reaches every
process and every open connection is collab.cluster.revocations'. A revocation
reaches beyond any one document, so these need an admin token for every
document (`"docs": ["*"]`).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from collab.api.access import AdminGrant
from collab.api.rest import AUTH_ERRORS, runtime_of, timestamp
from collab.auth.policy import ALL_DOCUMENTS, AuthFailure, Forbidden, Grant
from collab.auth.revocation import Revocation, RevocationKind


class RevocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jti: str | None = Field(
        default=None, min_length=1, max_length=200, description="Revoke the token with this `jti`"
    )
    subject: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Revoke every token of this `sub` issued (`iat`) up to now",
    )
    until: AwareDatetime | None = Field(
        default=None,
        description="When the revocation lapses (ISO 8601 with a zone, or Unix seconds); "
        "none: it holds for good",
    )
    reason: str | None = Field(default=None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _names_one(self) -> RevocationIn:
        if (self.jti is None) == (self.subject is None):
            raise ValueError("give exactly one of `jti` and `subject`")
        if self.until is not None and self.until.timestamp() <= time.time():
            raise ValueError("`until` is in the past")
        return self


class RevocationOut(BaseModel):
    kind: Literal["jti", "subject"]
    value: str = Field(description="The `jti` or the subject")
    revoked_at: datetime
    until: datetime | None
    reason: str | None
    revoked_by: str | None = Field(description="The revoking token's `sub`")

    @classmethod
    def of(cls, revocation: Revocation) -> RevocationOut:
        return cls(
            kind=revocation.kind.value,
            value=revocation.value,
            revoked_at=timestamp(revocation.revoked_at),
            until=None if revocation.until is None else timestamp(revocation.until),
            reason=revocation.reason,
            revoked_by=revocation.revoked_by,
        )


class RevocationsOut(BaseModel):
    revocations: list[RevocationOut] = Field(description="Those in force, oldest first")


router = APIRouter(prefix="/api/tokens/revocations", tags=["tokens"], responses=AUTH_ERRORS)


def _require_every_document(grant: Grant) -> None:
    if ALL_DOCUMENTS not in grant.documents:
        raise Forbidden(
            AuthFailure.DOCUMENT_NOT_IN_SCOPE,
            'revoking tokens needs an admin token for every document ("docs": ["*"])',
        )


@router.post("", response_model=RevocationOut, status_code=201)
async def revoke(
    request: Request, body: Annotated[RevocationIn, Body()], grant: AdminGrant
) -> RevocationOut:
    """Refuse the token (by `jti`) or the subject's tokens from now on, and close
    the connections they hold open on every process (4401)."""
    _require_every_document(grant)
    kind, value = (
        (RevocationKind.TOKEN, body.jti)
        if body.jti is not None
        else (RevocationKind.SUBJECT, body.subject)
    )
    assert value is not None
    revocation = Revocation(
        kind,
        value,
        revoked_at=time.time(),
        until=None if body.until is None else body.until.timestamp(),
        reason=body.reason,
        revoked_by=grant.subject,
    )
    await runtime_of(request).revocations.revoke(revocation)
    return RevocationOut.of(revocation)


@router.get("", response_model=RevocationsOut)
async def list_revocations(request: Request, grant: AdminGrant) -> RevocationsOut:
    _require_every_document(grant)
    revocations = await runtime_of(request).revocations.in_force()
    return RevocationsOut(revocations=[RevocationOut.of(r) for r in revocations])
