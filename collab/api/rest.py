"""What every REST route shares: the document-name path parameter, the error
bodies the OpenAPI schema lists, the runtime behind a request, timestamps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path, Request
from pydantic import BaseModel

from collab.protocol.names import (
    DOCUMENT_NAME_MAX_CHARS,
    DOCUMENT_NAME_PATTERN,
    DOCUMENT_NAME_RULE,
)
from collab.runtime import Runtime

DocumentName = Annotated[
    str,
    Path(
        pattern=DOCUMENT_NAME_PATTERN,
        max_length=DOCUMENT_NAME_MAX_CHARS,
        description=DOCUMENT_NAME_RULE,
    ),
]


class ErrorBody(BaseModel):
    detail: str


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or a bad or expired one"},
    403: {"model": ErrorBody, "description": "Document or role not granted, or bad Origin"},
}


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
