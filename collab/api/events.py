"""The change feed and the webhook admin API: /api/events, /api/webhooks[...].

The feed gives the same events webhooks deliver (collab.storage.events), by
cursor, for consumers that cannot receive webhooks; an admin token sees the
events of the documents it covers. Managing subscriptions and parked deliveries
needs an admin token covering every document (`*`): a subscriber hears about all
of them. Subscription URLs are the administrator's choice and the server makes
requests to them: see docs/webhooks.md (SSRF).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from collab.api.access import AdminGrant
from collab.api.rest import AUTH_ERRORS, NOT_FOUND, ErrorBody, runtime_of, timestamp
from collab.auth.policy import ALL_DOCUMENTS, AuthFailure, Forbidden, Grant
from collab.storage.deliveries import Delivery, Subscription
from collab.webhooks.http_post import check_url

router = APIRouter()

FEED_MAX_LIMIT = 1000


class EventOut(BaseModel):
    id: int = Field(description="The event's sequence number: the feed's cursor")
    type: str = Field(
        description="document.created, document.updated, version.saved, document.restored "
        "or document.deleted"
    )
    document: str
    occurred_at: datetime
    data: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventOut]
    next: int = Field(description="Pass as `after` to read on (the last event read, or `after`)")


class SubscriptionIn(BaseModel):
    url: str = Field(max_length=2048, examples=["https://hooks.example.com/collab"])
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=512,
        description="The signing key for this URL; default COLLAB_WEBHOOK_SECRET",
    )


class SubscriptionOut(BaseModel):
    id: int
    url: str
    source: str = Field(description="config (COLLAB_WEBHOOK_URLS) or api")
    created_at: datetime
    has_own_secret: bool


class ParkedOut(BaseModel):
    subscription: int
    url: str
    event: EventOut
    attempts: int
    last_attempt_at: datetime | None
    last_error: str | None


class RetryIn(BaseModel):
    subscription: int | None = Field(default=None, description="Only this subscription's")
    event: int | None = Field(default=None, description="Only this event")


class RetryOut(BaseModel):
    retried: int


def _require_all_documents(grant: Grant) -> None:
    if ALL_DOCUMENTS not in grant.documents:
        raise Forbidden(
            AuthFailure.DOCUMENT_NOT_IN_SCOPE, "webhooks need a token covering every document (*)"
        )


def _subscription_out(subscription: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=subscription.id,
        url=subscription.url,
        source=subscription.source,
        created_at=timestamp(subscription.created_at),
        has_own_secret=subscription.secret is not None,
    )


def _event_out(payload: dict[str, Any]) -> EventOut:
    return EventOut.model_validate(payload)


@router.get("/api/events", response_model=EventPage, responses=AUTH_ERRORS, tags=["events"])
async def read_events(
    grant: AdminGrant,
    request: Request,
    after: Annotated[int, Query(ge=0, description="Events after this id (0: from the start)")] = 0,
    limit: Annotated[int, Query(ge=1, le=FEED_MAX_LIMIT)] = 100,
) -> EventPage:
    """Published events after the cursor, oldest first. Old events are kept for
    COLLAB_EVENTS_RETENTION_S; a `document.updated` appears once editing paused."""
    events = await runtime_of(request).events.read(after=after, limit=limit)
    return EventPage(
        events=[_event_out(e.payload()) for e in events if grant.covers(e.document)],
        next=events[-1].seq if events else after,
    )


@router.get(
    "/api/webhooks", response_model=list[SubscriptionOut], responses=AUTH_ERRORS, tags=["events"]
)
async def list_subscriptions(grant: AdminGrant, request: Request) -> list[SubscriptionOut]:
    _require_all_documents(grant)
    subscriptions = await runtime_of(request).deliveries.subscriptions()
    return [_subscription_out(s) for s in subscriptions]


@router.post(
    "/api/webhooks",
    status_code=201,
    response_model=SubscriptionOut,
    responses=AUTH_ERRORS | {422: {"model": ErrorBody}},
    tags=["events"],
)
async def add_subscription(
    body: SubscriptionIn, grant: AdminGrant, request: Request
) -> SubscriptionOut | JSONResponse:
    """Every event published from now on is POSTed to `url`, signed."""
    _require_all_documents(grant)
    runtime = runtime_of(request)
    try:
        url = check_url(body.url)
    except ValueError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    if body.secret is None and not runtime.settings.webhook_secret:
        detail = "no secret given and no COLLAB_WEBHOOK_SECRET to sign with"
        return JSONResponse({"detail": detail}, status_code=422)
    return _subscription_out(await runtime.deliveries.subscribe(url, body.secret))


@router.delete(
    "/api/webhooks/{subscription_id}",
    status_code=204,
    responses=NOT_FOUND | AUTH_ERRORS,
    tags=["events"],
)
async def delete_subscription(
    subscription_id: int, grant: AdminGrant, request: Request
) -> Response:
    """Stop delivering to an added subscription (configured ones follow
    COLLAB_WEBHOOK_URLS); its undelivered and parked deliveries go with it."""
    _require_all_documents(grant)
    if not await runtime_of(request).deliveries.unsubscribe(subscription_id):
        detail = f"no subscription {subscription_id} added through the API"
        return JSONResponse({"detail": detail}, status_code=404)
    return Response(status_code=204)


@router.get(
    "/api/webhooks/parked", response_model=list[ParkedOut], responses=AUTH_ERRORS, tags=["events"]
)
async def list_parked(
    grant: AdminGrant,
    request: Request,
    subscription: int | None = None,
    limit: Annotated[int, Query(ge=1, le=FEED_MAX_LIMIT)] = 100,
) -> list[ParkedOut]:
    """Deliveries that failed COLLAB_WEBHOOK_MAX_ATTEMPTS times, oldest event first."""
    _require_all_documents(grant)
    parked = await runtime_of(request).deliveries.parked(limit=limit, subscription_id=subscription)
    return [_parked_out(delivery) for delivery in parked]


@router.post(
    "/api/webhooks/parked/retry", response_model=RetryOut, responses=AUTH_ERRORS, tags=["events"]
)
async def retry_parked(body: RetryIn, grant: AdminGrant, request: Request) -> RetryOut:
    """Make parked deliveries due again (all, one subscription's, or one event's),
    with a fresh count of attempts."""
    _require_all_documents(grant)
    runtime = runtime_of(request)
    retried = await runtime.deliveries.retry_parked(
        subscription_id=body.subscription, event_seq=body.event
    )
    runtime.metrics.webhook_parked.set(await runtime.deliveries.count_parked())
    return RetryOut(retried=retried)


def _parked_out(delivery: Delivery) -> ParkedOut:
    return ParkedOut(
        subscription=delivery.subscription.id,
        url=delivery.subscription.url,
        event=_event_out(delivery.event.payload()),
        attempts=delivery.attempts,
        last_attempt_at=None
        if delivery.last_attempt_at is None
        else timestamp(delivery.last_attempt_at),
        last_error=delivery.last_error,
    )
