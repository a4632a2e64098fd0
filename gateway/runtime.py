"""The gateway runtime every ingress shares: settings, pipeline, policy store, event sink,
party hasher. Ingress adapters call `Gateway.process` and translate the verdict to the wire."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from gateway.config import Settings
from gateway.errors import StoreError
from gateway.events import EventSink, make_event_sink
from gateway.logging import log_verdict, verdict_record
from gateway.message import Message
from gateway.pipeline import Pipeline
from gateway.plugins import PluginEnv, build_pipeline
from gateway.policy import DEFAULT_POLICY, OnBlock, Policy
from gateway.privacy import PartyHasher
from gateway.store.policy import PolicyStore
from gateway.verdict import Action, Verdict

if TYPE_CHECKING:
    from gateway.store import Stores

log = logging.getLogger("mamori.runtime")

VerdictHook = Callable[[Message, Verdict, str], Awaitable[None]]


class QuarantineStore(Protocol):
    async def add(self, message: Message, verdict: Verdict, ingress: str) -> None:
        """Keep a recoverable copy of a blocked message for its subscriber."""
        ...


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
    quarantine: QuarantineStore | None = None
    # policy, quarantine, feedback and audit stores on one database (gateway.store)
    stores: Stores | None = None

    @classmethod
    def create(cls, settings: Settings, *, env: PluginEnv | None = None,
               events: EventSink | None = None, policies: PolicyStore | None = None) -> Gateway:
        from gateway import limits
        from gateway.store import Stores

        limits.apply(settings)  # input limits and memo cache bounds (MAMORI_LIMITS__*)
        env = env or PluginEnv(settings)

        data = settings.data_dir
        stores = Stores.open(settings)  # lazy: the database is opened on first use
        if policies is None:
            policies = stores.policies
        if events is None:
            events = make_event_sink(settings)
        hasher = PartyHasher.from_settings(settings.hash_key, data)
        # shared with check factories (e.g. the DMARC check emits report data as events)
        env.resources.setdefault("events", events)
        env.resources.setdefault("hasher", hasher)
        pipeline = build_pipeline(settings, env)
        return cls(settings, pipeline, policies, events, hasher, env,
                   quarantine=stores.quarantine, stores=stores)

    async def start(self) -> None:
        await self.pipeline.start()
        await self.events.start()
        if self.stores is not None:
            await self.stores.start()
        if self.stores is None or self.policies is not self.stores.policies:
            start = getattr(self.policies, "start", None)
            if start is not None:
                await start()

    async def close(self) -> None:
        await self.pipeline.close()
        await self.events.close()
        await self.policies.close()
        if self.stores is not None:
            await self.stores.close()

    async def policy_for(self, subscriber: str | None) -> Policy:
        return await self.policies.get(subscriber)

    async def process(self, message: Message, ingress: str, policy: Policy | None = None) -> Verdict:
        """Scan one message for its subscriber's policy, log and emit the verdict."""
        if policy is None:
            policy = await self.policy_for(message.subscriber)
        verdict = await self.pipeline.scan(message, policy)
        verdict = await self.hold(message, verdict, policy, ingress)
        await self.report(message, verdict, ingress)
        return verdict

    async def process_many(
        self, messages: Sequence[Message], ingress: str,
        on_verdict: Callable[[int, Verdict], None] | None = None,
    ) -> list[Verdict]:
        """`process` for many messages at once: the same verdicts, in order.

        Policies known without a read are taken at once and the others read together; the
        scans run without a task per message (`Pipeline.scan_many`); the copies of blocked
        messages are written together (one group commit). `on_verdict(i, verdict)` is called
        as soon as message i's verdict is final (logged and emitted; for a kept copy, once it
        is stored), so an ingress can answer it without waiting for the others. A failed copy
        of a message to be quarantined raises StoreError after every other verdict is final.
        """
        policies: list[Policy | None] = [None] * len(messages)
        peek = getattr(self.policies, "peek", None)
        if peek is not None:
            policies = [peek(m.subscriber) for m in messages]
        missing = [i for i, p in enumerate(policies) if p is None]
        if missing:
            got = await asyncio.gather(*(self.policy_for(messages[i].subscriber) for i in missing))
            for i, p in zip(missing, got, strict=True):
                policies[i] = p
        verdicts = await self.pipeline.scan_many(messages, policies)
        held: list[int] = []
        for i, v in enumerate(verdicts):
            if v.action in (Action.QUARANTINE, Action.REJECT):
                held.append(i)
                continue
            if self.hooks:
                await self.report(messages[i], v, ingress)
            else:  # `report` without hooks: no coroutine per message
                self.record(messages[i], v, ingress)
            if on_verdict is not None:
                on_verdict(i, v)
        if not held:
            return verdicts
        kept = await self._hold_many(
            [(messages[i], verdicts[i], policies[i] or DEFAULT_POLICY) for i in held], ingress)
        error: BaseException | None = None
        for i, k in zip(held, kept, strict=True):
            if isinstance(k, BaseException):
                error = error or k
                continue
            verdicts[i] = k
            if self.hooks:
                await self.report(messages[i], k, ingress)
            else:
                self.record(messages[i], k, ingress)
            if on_verdict is not None:
                on_verdict(i, k)
        if error is not None:
            raise error
        return verdicts

    async def report(self, message: Message, verdict: Verdict, ingress: str) -> None:
        """Log and emit a final verdict, then run the verdict hooks (failures are logged)."""
        self.record(message, verdict, ingress)
        for hook in self.hooks:
            try:
                await hook(message, verdict, ingress)
            except Exception:
                log.exception("verdict hook failed")

    async def hold(self, message: Message, verdict: Verdict, policy: Policy,
                   ingress: str = "") -> Verdict:
        """Keep a recoverable copy of a blocked message (the subscriber's `on_block`).

        A QUARANTINE verdict is returned only once the copy is stored: without a quarantine
        store it becomes TAG (delivered, marked), and a store failure raises StoreError so the
        ingress answers with a temporary failure. A REJECT keeps a copy on a best-effort basis
        (the sender is told, so nothing is lost if storing fails).
        """
        decided = _held_without_copy(self.quarantine, message, verdict, policy)
        if decided is not None:
            return decided
        assert self.quarantine is not None
        try:
            await self.quarantine.add(message, verdict, ingress)
        except Exception as exc:
            return _copy_failed(verdict, exc)
        return verdict

    async def _hold_many(self, items: list[tuple[Message, Verdict, Policy]],
                         ingress: str) -> list[Verdict | BaseException]:
        """`hold` of many messages: each one's verdict or the error `hold` would raise, in
        order. A store with `add_many` stores the copies together without a task each
        (one transaction when the database is free)."""
        add_many = getattr(self.quarantine, "add_many", None)
        if add_many is None:
            return await asyncio.gather(*(self.hold(m, v, p, ingress) for m, v, p in items),
                                        return_exceptions=True)
        out: list[Verdict | BaseException] = []
        copies: list[int] = []
        for k, (m, v, p) in enumerate(items):
            decided = _held_without_copy(self.quarantine, m, v, p)
            out.append(v if decided is None else decided)
            if decided is None:
                copies.append(k)
        if not copies:
            return out
        try:
            errors = await add_many([items[k][:2] for k in copies], ingress)
        except Exception as exc:
            errors = [exc] * len(copies)
        for k, err in zip(copies, errors, strict=True):
            if err is not None:
                try:
                    out[k] = _copy_failed(items[k][1], err)
                except StoreError as failed:
                    out[k] = failed
        return out

    def record(self, message: Message, verdict: Verdict, ingress: str) -> None:
        rec = verdict_record(message, verdict, self.hasher, ingress)
        log_verdict(rec)
        self.events.emit("verdicts", rec["subscriber"], rec)


def _held_without_copy(quarantine: QuarantineStore | None, message: Message, verdict: Verdict,
                       policy: Policy) -> Verdict | None:
    """`Gateway.hold`'s answer when no copy is to be stored; None when one is."""
    action = verdict.action
    if action not in (Action.QUARANTINE, Action.REJECT) or policy.on_block is OnBlock.DROP:
        return verdict
    if quarantine is None or not message.subscriber:  # nobody could get it back
        if action is Action.QUARANTINE:
            return replace(verdict, action=Action.TAG, reason="no quarantine store")
        return verdict
    return None


def _copy_failed(verdict: Verdict, exc: BaseException) -> Verdict:
    """`Gateway.hold`'s answer when storing the copy failed: StoreError for a QUARANTINE (the
    ingress answers a temporary failure), the verdict for a REJECT (logged)."""
    if verdict.action is Action.QUARANTINE:
        raise StoreError("quarantine store failed") from exc
    log.warning("could not keep a copy of a rejected message", exc_info=exc)
    return verdict
