"""Subscriber endpoints: settings (policy), quarantine and release, feedback.

Every route is under /v1/subscribers/{subscriber_id}/ and guarded by `subscriber_access`: a
subscriber's own token, or an API key with `subscribers:admin`.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, status

from gateway.api.auth import ERRORS, Caller, subscriber_access
from gateway.api.common import (
    SettingsError,
    build_policy,
    diff,
    gateway_of,
    record_changes,
    stores_of,
)
from gateway.api.models import (
    MESSAGE_ID_PATTERN,
    FeedbackIn,
    FeedbackOut,
    PolicyOut,
    PolicyPatch,
    PolicySettings,
    QuarantineItem,
    QuarantineList,
    ReleaseResult,
)
from gateway.policy import Policy
from gateway.store.quarantine import QuarantinedMessage, message_bytes

router = APIRouter(prefix="/v1/subscribers/{subscriber_id}", tags=["subscribers"])

Access = Annotated[Caller, Depends(subscriber_access)]
MessageId = Annotated[str, Path(min_length=1, max_length=128, pattern=MESSAGE_ID_PATTERN)]
async def _current(request: Request, subscriber: str) -> Policy:
    # read from the database, not the scan cache: the API shows what is stored
    stores = stores_of(request)
    return await stores.policy_db.get(subscriber)


async def _save(request: Request, caller: Caller, old: Policy, new: Policy,
                action: str) -> PolicyOut:
    gw = gateway_of(request)
    changes = diff(old, new, gw)
    if changes:
        await stores_of(request).policies.put(new, actor=caller.label)
        await record_changes(gw, caller, action, [(new.subscriber or "", changes)])
        return PolicyOut.of(new)
    return PolicyOut.of(old)


@router.get("/policy", response_model=PolicyOut, responses=ERRORS,
            summary="The subscriber's protection settings (the default profile when never set)")
async def get_policy(request: Request, subscriber_id: str, caller: Access) -> PolicyOut:
    return PolicyOut.of(await _current(request, subscriber_id))


@router.put("/policy", response_model=PolicyOut, responses=ERRORS,
            summary="Replace the settings; absent fields take the defaults")
async def put_policy(request: Request, subscriber_id: str, caller: Access,
                     body: PolicySettings) -> PolicyOut:
    old = await _current(request, subscriber_id)
    try:
        new = build_policy(gateway_of(request), subscriber_id, body.model_dump())
    except SettingsError as exc:
        raise HTTPException(422, str(exc)) from None
    return await _save(request, caller, old, new, "policy.put")


@router.patch("/policy", response_model=PolicyOut, responses=ERRORS,
              summary="Change only the given settings")
async def patch_policy(request: Request, subscriber_id: str, caller: Access,
                       body: PolicyPatch) -> PolicyOut:
    given = body.model_dump(exclude_unset=True)
    nulls = sorted(k for k, v in given.items() if v is None)
    if nulls:
        raise HTTPException(422,
                            f"null is not a value for {', '.join(nulls)}")
    old = await _current(request, subscriber_id)
    merged = {k: v for k, v in old.to_json().items() if k not in ("subscriber", "updated_at")}
    merged.update(given)
    try:
        new = build_policy(gateway_of(request), subscriber_id, merged)
    except SettingsError as exc:
        raise HTTPException(422, str(exc)) from None
    return await _save(request, caller, old, new, "policy.patch")


def _item(q: QuarantinedMessage) -> QuarantineItem:
    return QuarantineItem(
        message_id=q.message_id, channel=q.channel,
        sender=q.sender, preview=q.preview, received_at=q.received_at, stored_at=q.stored_at,
        expires_at=q.expires_at, action=q.action, score=round(q.score, 3),
        reasons=q.reasons,
        status=q.status,
        released_at=q.released_at,
    )


@router.get("/quarantine", response_model=QuarantineList, responses=ERRORS,
            summary="Blocked messages with the reasons, newest first")
async def list_quarantine(
    request: Request, subscriber_id: str, caller: Access,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[float | None, Query(ge=0, le=1e11,
                                          description="stored_at of the last item seen")] = None,
    status_: Annotated[Literal["held", "released"] | None, Query(alias="status")] = None,
) -> QuarantineList:
    store = stores_of(request).quarantine
    items = await store.list(subscriber_id, limit=limit, before=before, status=status_)
    return QuarantineList(
        items=[_item(q) for q in items],
        next_before=items[-1].stored_at if len(items) == limit else None,
        retention_days=store.days,
    )


@router.get("/quarantine/{message_id}", response_model=QuarantineItem,
            responses={**ERRORS, 404: {"description": "no such message (or purged)"}},
            summary="One blocked message with the reasons")
async def get_quarantined(request: Request, subscriber_id: str, message_id: MessageId,
                          caller: Access) -> QuarantineItem:
    q = await stores_of(request).quarantine.get(subscriber_id, message_id)
    if q is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message")
    return _item(q)


@router.post("/quarantine/{message_id}/release", response_model=ReleaseResult,
             responses={**ERRORS, 404: {"description": "no such message (or purged)"},
                        409: {"description": "a release of this message is in progress"}},
             summary="Get a wrongly blocked message back")
async def release(request: Request, subscriber_id: str, message_id: MessageId,
                  caller: Access) -> ReleaseResult:
    gw = gateway_of(request)
    result = await stores_of(request).quarantine.release(subscriber_id, message_id, caller.label)
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message")
    item, redelivered, newly = result
    if not newly and item.status != "released":
        raise HTTPException(status.HTTP_409_CONFLICT, "a release of this message is in progress")
    if newly:
        await record_changes(gw, caller, "quarantine.release",
                             [(subscriber_id, {"message_id": message_id,
                                               "redelivered": redelivered})])
    return ReleaseResult(message_id=message_id, status="released", redelivered=redelivered)


@router.post("/feedback", response_model=FeedbackOut, status_code=status.HTTP_201_CREATED,
             responses=ERRORS,
             summary="\"This was fraud\" / \"this was not fraud\", with consent for retraining")
async def feedback(request: Request, subscriber_id: str, caller: Access,
                   body: Annotated[FeedbackIn, Body()]) -> FeedbackOut:
    gw = gateway_of(request)
    stores = stores_of(request)
    content: bytes | None = None
    channel: str | None = None
    if body.message_id is not None:
        q = await stores.quarantine.get(subscriber_id, body.message_id)
        if q is not None:
            channel = q.channel
            if body.consent:
                content = message_bytes(q.to_message())
    if content is None and body.consent and body.content:
        content = body.content.encode("utf-8")
    fid = await stores.feedback.add(
        subscriber=subscriber_id, label=body.label, consent=body.consent, actor=caller.label,
        message_id=body.message_id, channel=channel, content=content, comment=body.comment,
    )
    hashed = gw.hasher(subscriber_id)
    gw.events.emit("feedback", hashed, {
        "at": time.time(), "id": fid, "subscriber": hashed, "message_id": body.message_id,
        "label": body.label, "consent": body.consent, "channel": channel,
        "content_kept": content is not None,
    })
    return FeedbackOut(id=fid, label=body.label, consent=body.consent,
                       content_kept=content is not None)
