"""Operator endpoints: bulk export and import of subscriber settings (API key with
`subscribers:admin`). The brand sender-ID registry lives with the SMS subsystem.

Export streams NDJSON, one `PolicyImportRow` a line (only subscribers with stored settings).
Import takes the same NDJSON (or a JSON array); every line is validated first, and nothing is
written unless all lines are valid. Each changed subscriber is audited and emitted as a
"settings" event like a PUT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from gateway.api.auth import ADMIN_SCOPE, Caller, require_scope
from gateway.api.common import (
    SettingsError,
    build_policy,
    diff,
    gateway_of,
    record_changes,
    stores_of,
)
from gateway.api.models import AuditRecord, ImportResult, PolicyImportRow, SubscriberId
from gateway.policy import Policy

router = APIRouter(prefix="/v1/operator", tags=["operator"])

Admin = Annotated[Caller, Depends(require_scope(ADMIN_SCOPE))]
MAX_IMPORT_ROWS = 100_000
MAX_ERRORS = 100
NDJSON = "application/x-ndjson"


@router.get("/policies/export", summary="Every stored subscriber setting, as NDJSON",
            response_class=StreamingResponse,
            responses={200: {"content": {NDJSON: {}}, "description": "one JSON object a line"},
                       401: {}, 403: {}, 429: {}, 503: {}})
async def export_policies(request: Request, caller: Admin) -> StreamingResponse:
    store = stores_of(request).policy_db

    async def lines() -> AsyncIterator[bytes]:
        async for p in store.iter_all():
            d = p.to_json()
            d.pop("updated_at", None)
            yield orjson.dumps(d) + b"\n"

    return StreamingResponse(lines(), media_type=NDJSON)


def _parse(body: bytes) -> list[Any]:
    text = body.strip()
    if not text:
        return []
    if text[:1] == b"[":
        data = orjson.loads(text)
        if not isinstance(data, list):
            raise ValueError("expected a JSON array or NDJSON")
        return data
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


@router.post("/policies/import", response_model=ImportResult,
             summary="Bulk import of settings (NDJSON or a JSON array); all or nothing",
             openapi_extra={"requestBody": {"required": True, "content": {
                 NDJSON: {"schema": {"type": "string"}},
                 "application/json": {"schema": {"type": "array", "items": {
                     "$ref": "#/components/schemas/PolicyImportRow"}}}}}},
             responses={400: {"description": "not NDJSON or a JSON array"}, 401: {}, 403: {},
                        413: {}, 422: {"description": "invalid rows (an ImportResult with errors) or parameters"},
                        429: {}, 503: {}})
async def import_policies(
    request: Request, caller: Admin,
    dry_run: Annotated[bool, Query(description="validate only")] = False,
) -> Any:
    gw = gateway_of(request)
    store = stores_of(request).policies
    try:
        rows = _parse(await request.body())
    except (ValueError, orjson.JSONDecodeError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not NDJSON or a JSON array") from None
    if len(rows) > MAX_IMPORT_ROWS:
        raise HTTPException(413,
                            f"at most {MAX_IMPORT_ROWS} rows per import")
    errors: list[dict[str, Any]] = []
    new: dict[str, Policy] = {}
    for n, raw in enumerate(rows, 1):
        try:
            row = PolicyImportRow.model_validate(raw)
            data = row.model_dump()
            sub = data.pop("subscriber")
            new[sub] = build_policy(gw, sub, data)
        except ValidationError as exc:
            errors.append({"line": n, "error": "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3])})
        except SettingsError as exc:
            errors.append({"line": n, "error": str(exc)})
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        result = ImportResult(received=len(rows), changed=0, unchanged=0, errors=errors,
                              dry_run=dry_run)
        return JSONResponse(result.model_dump(), status_code=422)
    old = await stores_of(request).policy_db.get_many(new)
    changes = [(sub, d) for sub, p in new.items() if (d := diff(old[sub], p, gw))]
    if not dry_run and changes:
        await store.put_many([new[sub] for sub, _ in changes], actor=caller.label)
        await record_changes(gw, caller, "policy.import", changes)
    return ImportResult(received=len(rows), changed=len(changes),
                        unchanged=len(new) - len(changes), errors=[], dry_run=dry_run)


@router.get("/audit", response_model=list[AuditRecord],
            summary="Settings changes (who, when, what), newest first",
            responses={401: {}, 403: {}, 422: {}, 429: {}, 503: {}})
async def audit(
    request: Request, caller: Admin,
    subscriber: Annotated[SubscriberId | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRecord]:
    rows = await stores_of(request).audit.list(subscriber, limit=limit)
    return [AuditRecord.model_validate(r) for r in rows]
