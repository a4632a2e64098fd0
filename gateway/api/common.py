"""Shared by the routers: settings -> Policy, change diffs, audit, the answer to a GatewayError."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.responses import JSONResponse

from gateway.api.auth import Caller
from gateway.errors import GatewayError, InputError, StoreError
from gateway.policy import DEFAULT_POLICY, Policy, normalise_party
from gateway.runtime import Gateway
from gateway.store import Stores

log = logging.getLogger("mamori.api")

LIST_FIELDS = ("allow", "block", "contacts")
SETTINGS_FIELDS = tuple(f for f in DEFAULT_POLICY.to_json() if f not in ("subscriber", "updated_at"))


def gateway_error_response(exc: GatewayError) -> JSONResponse:
    """The answer to a GatewayError: a peer never sees exception text."""
    if isinstance(exc, StoreError):
        log.warning("store unavailable: %s", exc)
        return JSONResponse({"detail": "store unavailable, retry later"}, status_code=503,
                            headers={"Retry-After": "5"})
    if isinstance(exc, InputError):
        return JSONResponse({"detail": "invalid input"}, status_code=400)
    log.error("request failed: %s", type(exc).__name__)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def gateway_of(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def stores_of(request: Request) -> Stores:
    stores = gateway_of(request).stores
    if stores is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "store not configured")
    return stores


class SettingsError(ValueError):
    pass


def build_policy(gw: Gateway, subscriber: str, data: Mapping[str, Any]) -> Policy:
    """A Policy from validated API settings: list entries normalised, weights checked
    against the declared symbols."""
    d = dict(data)
    for key in LIST_FIELDS:
        if key in d:
            entries = set()
            for raw in d[key]:
                v = normalise_party(raw)
                if not v or v == "+":
                    raise SettingsError(f"{key}: {raw!r} is not a number, sender ID, domain or address")
                entries.add(v)
            d[key] = sorted(entries)
    if "weights" in d:
        unknown = sorted(set(d["weights"]) - set(gw.pipeline.specs))
        if unknown:
            raise SettingsError(f"weights: unknown symbols {', '.join(unknown[:5])}")
    d["subscriber"] = subscriber
    d["updated_at"] = time.time()
    return Policy.from_json(d)


def diff(old: Policy, new: Policy, gw: Gateway) -> dict[str, Any]:
    """What changed, with list entries (numbers, addresses) hashed: safe for events."""
    a, b = old.to_json(), new.to_json()
    out: dict[str, Any] = {}
    for key in SETTINGS_FIELDS:
        if a[key] == b[key]:
            continue
        if key in LIST_FIELDS:
            added = sorted(set(b[key]) - set(a[key]))
            removed = sorted(set(a[key]) - set(b[key]))
            out[key] = {"added": [gw.hasher(x) for x in added],
                        "removed": [gw.hasher(x) for x in removed]}
        else:
            out[key] = {"old": a[key], "new": b[key]}
    return out


async def record_changes(gw: Gateway, caller: Caller, action: str,
                         changes: list[tuple[str, dict[str, Any]]]) -> None:
    """Audit (who, when, what) in the store and on the "settings" event stream."""
    if not changes:
        return
    stores = gw.stores
    now = time.time()
    actor = caller.label
    if stores is not None:
        await stores.audit.add_many([
            {"actor": actor, "subscriber": sub, "action": action, "changes": ch, "at": now}
            for sub, ch in changes
        ])
    event_actor = (f"subscriber:{gw.hasher(caller.id)}" if caller.kind == "subscriber" else actor)
    for sub, ch in changes:
        hashed = gw.hasher(sub)
        gw.events.emit("settings", hashed, {
            "at": now, "actor": event_actor, "subscriber": hashed, "action": action,
            "changes": ch,
        })
