"""Audit of every settings change: who, when, what changed. Each record is stored here and
emitted on the "settings" event stream (with the subscriber id and list entries hashed)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select

from gateway.errors import StoreError
from gateway.retention import Holds
from gateway.store.db import Database, purge_rows
from gateway.store.schema import audit


@dataclass
class AuditStore:
    db: Database
    kind: str = "audit"

    async def add(self, *, actor: str, subscriber: str, action: str,
                  changes: dict[str, Any], at: float | None = None) -> None:
        await self.add_many([{"actor": actor, "subscriber": subscriber, "action": action,
                              "changes": changes, "at": at}])

    async def add_many(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        now = time.time()
        rows = [{"at": r.get("at") or now, "actor": str(r["actor"])[:128],
                 "subscriber": r["subscriber"], "action": r["action"][:32],
                 "changes": orjson.dumps(r["changes"], option=orjson.OPT_SORT_KEYS).decode()}
                for r in records]
        engine = await self.db.ready()
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(audit), rows)
        except Exception as exc:
            raise StoreError("audit store unavailable") from exc

    async def list(self, subscriber: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = select(audit)
        if subscriber is not None:
            q = q.where(audit.c.subscriber == subscriber)
        engine = await self.db.ready()
        async with engine.connect() as conn:
            rows = await conn.execute(q.order_by(audit.c.id.desc()).limit(limit))
            return [{**dict(r._mapping), "changes": orjson.loads(r.changes)} for r in rows]

    async def purge(self, cutoff: float, holds: Holds) -> int:
        return await purge_rows(self.db, audit, audit.c.at, cutoff, holds, audit.c.subscriber, None)
