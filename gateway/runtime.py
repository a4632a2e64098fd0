"""The gateway runtime every ingress shares: settings, pipeline, policy store, event sink,
party hasher. Ingress adapters call `Gateway.process` and translate the verdict to the wire."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.config import Settings
from gateway.events import EventSink, make_event_sink
from gateway.logging import log_verdict, verdict_record
from gateway.message import Message
from gateway.pipeline import Pipeline
from gateway.plugins import PluginEnv, build_pipeline
from gateway.policy import Policy
from gateway.privacy import PartyHasher
from gateway.store.policy import CachedPolicyStore, PolicyStore, SqlitePolicyStore
from gateway.verdict import Verdict

log = logging.getLogger("mamori.runtime")

VerdictHook = Callable[[Message, Verdict, str], Awaitable[None]]


@dataclass
class Gateway:
    settings: Settings
    pipeline: Pipeline
    policies: PolicyStore
    events: EventSink
    hasher: PartyHasher
    env: PluginEnv
    # called after each verdict (quarantine store, shadow models, ...); failures are logged
    hooks: list[VerdictHook] = field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings, *, env: PluginEnv | None = None,
               events: EventSink | None = None, policies: PolicyStore | None = None) -> Gateway:
        env = env or PluginEnv(settings)
        data = settings.data_dir
        if policies is None:
            policies = CachedPolicyStore(SqlitePolicyStore(data / "mamori.sqlite3"))
        if events is None:
            events = make_event_sink(settings)
        hasher = PartyHasher.from_settings(settings.hash_key, data)
        # shared with check factories (e.g. the DMARC check emits report data as events)
        env.resources.setdefault("events", events)
        env.resources.setdefault("hasher", hasher)
        pipeline = build_pipeline(settings, env)
        return cls(settings, pipeline, policies, events, hasher, env)

    async def start(self) -> None:
        await self.pipeline.start()
        await self.events.start()

    async def close(self) -> None:
        await self.pipeline.close()
        await self.events.close()
        await self.policies.close()

    async def policy_for(self, subscriber: str | None) -> Policy:
        return await self.policies.get(subscriber)

    async def process(self, message: Message, ingress: str, policy: Policy | None = None) -> Verdict:
        """Scan one message for its subscriber's policy, log and emit the verdict."""
        if policy is None:
            policy = await self.policy_for(message.subscriber)
        verdict = await self.pipeline.scan(message, policy)
        self.record(message, verdict, ingress)
        for hook in self.hooks:
            try:
                await hook(message, verdict, ingress)
            except Exception:
                log.exception("verdict hook failed")
        return verdict

    def record(self, message: Message, verdict: Verdict, ingress: str) -> None:
        rec = verdict_record(message, verdict, self.hasher, ingress)
        log_verdict(rec)
        self.events.emit("verdicts", rec["subscriber"], rec)
