"""The SMS HTTP hook and the operator's sender-ID registry.

- `POST /v1/sms/check` (scope `sms:check`): one SMS in, the verdict out in the shape of
  `mamori scan` (`Verdict.to_json()`, plus `message_id`).
- `POST /v1/sms/check-batch` (scope `sms:check`): a JSON array in, an array of verdicts out,
  in order; the messages of a batch are scanned in one pass (`Gateway.process_many`).
- `GET/PUT /v1/operator/sender-ids`, `PUT/DELETE /v1/operator/sender-ids/{sender_id}`
  (scope `operator:registry`): the brand sender-ID registry the spoofing check reads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, Field, model_validator

from gateway import limits
from gateway.api.auth import ERRORS, Caller, require_scope
from gateway.message import Message, Peer
from gateway.runtime import Gateway
from gateway.sms.encoding import decode_payload, parse_udh
from gateway.sms.registry import SenderIdEntry, registry_for
from gateway.verdict import Verdict

router = APIRouter(responses=ERRORS)

MAX_BATCH = 1000  # defaults; MAMORI_LIMITS__SMS_BATCH_MAX and __SMS_TEXT_MAX apply
HTTP_422 = 422  # Unprocessable Content (the constant was renamed across Starlette versions)
MAX_TEXT = 64 * 1024

SmsCaller = Annotated[Caller, Depends(require_scope("sms:check"))]
RegistryCaller = Annotated[Caller, Depends(require_scope("operator:registry"))]


class SmsIn(BaseModel):
    """One SMS: `text`, or `payload` (hex or base64 octets) with its SMPP `data_coding`."""

    sender: str = Field("", max_length=64)
    recipient: str = Field("", max_length=64)
    text: str | None = None  # at most MAMORI_LIMITS__SMS_TEXT_MAX characters (422)
    payload: str | None = None  # hex or base64 of at most that many octets
    payload_encoding: str = Field("hex", pattern="^(hex|base64)$")
    data_coding: int = Field(0, ge=0, le=255)
    esm_class: int = Field(0, ge=0, le=255)
    sender_ton: int | None = Field(None, ge=0, le=255)
    sender_npi: int | None = Field(None, ge=0, le=255)
    subscriber: str | None = Field(None, max_length=64)
    account: str | None = Field(None, max_length=64, description="route or client account")
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_body(self) -> SmsIn:
        if (self.text is None) == (self.payload is None):
            raise ValueError("give exactly one of text and payload")
        if len(self.metadata) > 32:
            raise ValueError("at most 32 metadata entries")
        return self


def _text_of(sms: SmsIn) -> str:
    limit = limits.current().sms_text_max
    if sms.text is not None:
        if len(sms.text) > limit:
            raise HTTPException(HTTP_422, f"text longer than {limit} characters")
        return sms.text
    assert sms.payload is not None
    if len(sms.payload) > 2 * limit:
        raise HTTPException(HTTP_422, f"payload longer than {limit} octets")
    try:
        raw = (bytes.fromhex(sms.payload) if sms.payload_encoding == "hex"
               else base64.b64decode(sms.payload, validate=True))
    except (ValueError, binascii.Error):
        raise HTTPException(HTTP_422,
                            f"payload is not valid {sms.payload_encoding}") from None
    shift = 0
    if sms.esm_class & 0x40:
        udh = parse_udh(raw)
        if udh is not None:
            raw, shift = raw[udh.length:], udh.shift_table
    return decode_payload(raw, sms.data_coding, shift_table=shift)


def sms_message(sms: SmsIn, caller: Caller, peer: Peer) -> Message:
    proto = {k[:32]: v[:256] for k, v in sms.metadata.items()}
    proto.update({"data_coding": str(sms.data_coding), "ingress": "http",
                  "account": sms.account or caller.id})
    if sms.sender_ton is not None:
        proto["ton"] = str(sms.sender_ton)
    if sms.sender_npi is not None:
        proto["npi"] = str(sms.sender_npi)
    return Message.sms(_text_of(sms), sender=sms.sender, recipient=sms.recipient,
                       subscriber=sms.subscriber, protocol=proto, peer=peer)


def answer(msg: Message, verdict: Verdict) -> dict[str, Any]:
    out = verdict.to_json()
    out["message_id"] = msg.id
    return out


def peer_of(request: Request) -> Peer:
    c = request.client
    return Peer(ip=c.host, port=c.port) if c else Peer()


# Verdicts are plain JSON types: serialised with orjson directly (FastAPI's generic encoder
# costs more than the scan of an SMS).


@router.post("/v1/sms/check", tags=["sms"], response_class=Response,
             responses={200: {"description": "the verdict, as `mamori scan` prints it"}})
async def check(sms: SmsIn, request: Request, caller: SmsCaller) -> Response:
    """Scan one SMS; answer the verdict (action, score, symbols, model_version)."""
    gw: Gateway = request.app.state.gateway
    msg = sms_message(sms, caller, peer_of(request))
    out = answer(msg, await gw.process(msg, "http"))
    return Response(orjson.dumps(out), media_type="application/json")


@router.post("/v1/sms/check-batch", tags=["sms"], response_class=Response,
             responses={200: {"description": "the verdicts, in the order of the request"}})
async def check_batch(batch: Annotated[list[SmsIn], Body()],
                      request: Request, caller: SmsCaller) -> Response:
    """Scan up to 1000 SMS (`MAMORI_LIMITS__SMS_BATCH_MAX`); answer their verdicts in order."""
    limit = limits.current().sms_batch_max
    if len(batch) > limit:
        raise HTTPException(HTTP_422, f"at most {limit} messages per batch")
    gw: Gateway = request.app.state.gateway
    peer = peer_of(request)
    msgs = [sms_message(s, caller, peer) for s in batch]
    verdicts = await gw.process_many(msgs, "http")  # one pass, no task per message
    out = [answer(m, v) for m, v in zip(msgs, verdicts, strict=True)]
    return Response(orjson.dumps(out), media_type="application/json")


# -- operator: sender-ID registry ----------------------------------------------------------


class SenderIdIn(BaseModel):
    sender_id: str = Field(min_length=1, max_length=32)
    brand: str = Field(min_length=1, max_length=128)
    accounts: list[str] = Field(default_factory=list, max_length=1000,
                                description="ESME system_ids or routes it may arrive over; empty: any")

    def entry(self) -> SenderIdEntry:
        return SenderIdEntry(self.sender_id.strip(), self.brand, frozenset(self.accounts))


def _registry(request: Request) -> Any:
    gw: Gateway = request.app.state.gateway
    return registry_for(gw.env.resources, gw.settings.data_dir)


@router.get("/v1/operator/sender-ids", tags=["operator"])
async def list_sender_ids(request: Request, caller: RegistryCaller) -> list[dict[str, Any]]:
    return [e.to_json() for e in _registry(request).entries()]


@router.put("/v1/operator/sender-ids", tags=["operator"])
async def replace_sender_ids(entries: Annotated[list[SenderIdIn], Body(max_length=100_000)],
                             request: Request, caller: RegistryCaller) -> dict[str, int]:
    """Replace the whole registry."""
    reg = _registry(request)
    await asyncio.to_thread(reg.replace_all, [e.entry() for e in entries])
    return {"count": len(reg.entries())}


@router.put("/v1/operator/sender-ids/{sender_id}", tags=["operator"])
async def put_sender_id(sender_id: str, entry: SenderIdIn, request: Request,
                        caller: RegistryCaller) -> dict[str, Any]:
    if entry.sender_id.strip().casefold() != sender_id.strip().casefold():
        raise HTTPException(HTTP_422, "sender_id differs from the path")
    reg = _registry(request)
    await asyncio.to_thread(reg.put, entry.entry())
    return entry.entry().to_json()


@router.delete("/v1/operator/sender-ids/{sender_id}", tags=["operator"],
               status_code=status.HTTP_204_NO_CONTENT)
async def delete_sender_id(sender_id: str, request: Request, caller: RegistryCaller) -> None:
    if not await asyncio.to_thread(_registry(request).delete, sender_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such sender ID")
