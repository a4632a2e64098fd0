"""`Pipeline.scan_many` of inline checks runs them check by check over groups of messages
(`_scan_check_major`): the same verdicts as scanning each message alone, stateful checks
still see the messages in order, and each message's deadline and elapsed time are its own."""

from __future__ import annotations

import time

from gateway.message import Message, ScanContext
from gateway.pipeline import CHECK_MAJOR_GROUP, Pipeline, Stage
from gateway.policy import Policy, Strength
from gateway.verdict import CHECK_FAILED, Symbol
from tests.test_pipeline import make_check


def _pipeline(seen: list[tuple[str, str]]) -> Pipeline:
    """Checks with state across messages (a running count of texts, as a flood counter
    keeps) and within one (a later check reads what an earlier one published)."""
    counts: dict[str, int] = {}

    def count(ctx: ScanContext) -> list[Symbol]:
        seen.append(("count", ctx.message.text))
        key = ctx.message.text[:1]
        counts[key] = counts.get(key, 0) + 1
        ctx.data["count"] = counts[key]
        return [Symbol("COUNT_HIT", 0.1 * counts[key], (str(counts[key]),))]

    def reader(ctx: ScanContext) -> list[Symbol]:
        seen.append(("reader", ctx.message.text))
        return [Symbol("READER_HIT", 1.0, (f"{ctx.data['count']}/{len(ctx.results)}",))]

    def sometimes(ctx: ScanContext) -> list[Symbol]:
        if ctx.message.text.endswith("7"):
            raise ValueError("seven")
        return [Symbol("SOMETIMES_HIT")] if len(ctx.message.text) % 2 else []

    return Pipeline([
        make_check("count", stage=Stage.PRE, run=count, is_async=False),
        make_check("reader", run=reader, is_async=False, depends_on=("count",)),
        make_check("sometimes", stage=Stage.POST, run=sometimes, is_async=False),
    ])


def _shown(v) -> tuple:
    return (v.action, v.score, v.failed_checks, v.reason, v.policy_version,
            [(n, s.score, s.options) for n, s in v.symbols.items()])


async def test_check_major_equals_one_message_at_a_time() -> None:
    n = 2 * CHECK_MAJOR_GROUP + 5  # groups of the full size and a partial one
    msgs = [Message.sms(f"{'abc'[i % 3]} message {i}", sender="+819012345678",
                        recipient="+819087654321") for i in range(n)]
    policies = [Policy(strength=Strength.HIGH) if i % 4 == 0 else None for i in range(n)]
    seen_many: list[tuple[str, str]] = []
    many = await _pipeline(seen_many).scan_many(msgs, policies)
    seen_one: list[tuple[str, str]] = []
    p = _pipeline(seen_one)
    one = [await p.scan(m, pol) for m, pol in zip(msgs, policies, strict=True)]
    assert [_shown(v) for v in many] == [_shown(v) for v in one]
    # each check met the messages in their order, and its state moved in that order
    for name in ("count", "reader"):
        assert [t for c, t in seen_many if c == name] == [m.text for m in msgs]
    assert many[-1].symbols["COUNT_HIT"].options == (str(sum(
        1 for m in msgs if m.text[0] == msgs[-1].text[0])),)
    assert any(v.failed_checks == ("sometimes",) for v in many)
    assert all(v.elapsed_ms >= 0.0 for v in many)


async def test_check_major_deadline_is_each_messages_own() -> None:
    """A slow check on one message uses up that message's deadline, not its neighbours'."""

    def slow(ctx: ScanContext) -> list[Symbol]:
        if ctx.message.text == "slow":
            time.sleep(0.25)
        return []

    p = Pipeline([make_check("slow", stage=Stage.PRE, run=slow, is_async=False),
                  make_check("after", is_async=False)], deadline=0.2)
    texts = ["fast", "slow", "fast", "fast"]
    vs = await p.scan_many([Message.sms(t) for t in texts], [None] * len(texts))
    assert [v.failed_checks for v in vs] == [(), ("after",), (), ()]
    assert "deadline" in vs[1].symbols[CHECK_FAILED].options[0]
    assert vs[1].elapsed_ms >= 250.0  # its own time, not its group's
