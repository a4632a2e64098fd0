"""Feedback from subscribers: "this was fraud" / "this was not fraud", with their consent
recorded. The content is kept (for retraining) only when the subscriber consented."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select

from gateway.errors import StoreError
from gateway.retention import Holds
from gateway.store.db import Database, purge_rows
from gateway.store.schema import feedback


@dataclass
class FeedbackStore:
    db: Database
    kind: str = "feedback"

    async def add(self, *, subscriber: str, label: str, consent: bool, actor: str,
                  message_id: str | None = None, channel: str | None = None,
                  content: bytes | None = None, comment: str | None = None) -> int:
        row = {
            "subscriber": subscriber, "message_id": message_id, "label": label,
            "consent": consent, "channel": channel,
            "content": content if consent else None,
            "comment": comment, "created_at": time.time(), "actor": actor[:128],
        }
        engine = await self.db.ready()
        try:
            async with engine.begin() as conn:
                res = await conn.execute(insert(feedback).values(**row)
                                         .returning(feedback.c.id))
                return int(res.scalar_one())
        except Exception as exc:
            raise StoreError("feedback store unavailable") from exc

    async def list(self, subscriber: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = select(feedback.c.id, feedback.c.subscriber, feedback.c.message_id,
                   feedback.c.label, feedback.c.consent, feedback.c.channel,
                   feedback.c.created_at, (feedback.c.content.is_not(None)).label("has_content"))
        if subscriber is not None:
            q = q.where(feedback.c.subscriber == subscriber)
        engine = await self.db.ready()
        async with engine.connect() as conn:
            rows = await conn.execute(q.order_by(feedback.c.id.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    async def purge(self, cutoff: float, holds: Holds) -> int:
        return await purge_rows(self.db, feedback, feedback.c.created_at, cutoff, holds,
                                feedback.c.subscriber, feedback.c.message_id)
