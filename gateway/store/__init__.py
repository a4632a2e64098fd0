"""Storage: policy, quarantine, feedback and audit on one async data layer (SQLite embedded
default under MAMORI_DATA_DIR, PostgreSQL with MAMORI_STORE__URL), one alembic schema.

`Stores.open(settings)` builds them all on one `Database`; `Gateway.create` keeps the bundle
as `gw.stores`, uses `stores.policies` as its policy store, installs the quarantine verdict
as `gw.quarantine`; retention purges `stores.retainables()` (quarantine, feedback, audit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.store.audit import AuditStore
from gateway.store.db import Database
from gateway.store.feedback import FeedbackStore
from gateway.store.policy import CachedPolicyStore, DbPolicyStore
from gateway.store.quarantine import QuarantineStore

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.retention import Retainable


@dataclass
class Stores:
    db: Database
    policies: CachedPolicyStore  # the scan path's view (cached)
    policy_db: DbPolicyStore  # the stored rows (what the API reads and exports)
    quarantine: QuarantineStore
    feedback: FeedbackStore
    audit: AuditStore

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        db = Database.from_settings(settings.store.url, settings.data_dir)
        policy_db = DbPolicyStore(db)
        policies = CachedPolicyStore(
            policy_db, ttl=settings.store.policy_cache_ttl,
            poll_interval=settings.store.policy_poll_interval,
            timeout=settings.store.policy_timeout,
            fallback=settings.store.policy_fallback == "default",
            maxsize=settings.store.policy_cache_size,
        )
        quarantine = QuarantineStore(db, days=settings.retention.quarantine_days)
        if settings.store.release_smtp:
            from gateway.store.redeliver import SmtpRedeliverer

            quarantine.redeliverers["email"] = SmtpRedeliverer(
                settings.store.release_smtp, helo=settings.smtp.hostname)
        return cls(db, policies, policy_db, quarantine, FeedbackStore(db), AuditStore(db))

    def retainables(self) -> list[Retainable]:
        """The stores retention purges (quarantine, feedback, audit), all on this database."""
        return [self.quarantine, self.feedback, self.audit]

    async def start(self) -> None:
        await self.db.ready()
        await self.quarantine.recover()
        await self.policies.start()

    async def close(self) -> None:
        await self.policies.close()  # the policy store does not own the database
        await self.quarantine.close()  # its spooled copies into the database first
        await self.db.close()


__all__ = ["AuditStore", "Database", "FeedbackStore", "QuarantineStore", "Stores"]
