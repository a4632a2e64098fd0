"""The pipeline: ordering, concurrency, timeouts, failures, undeclared symbols, scoring."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.errors import ConfigError
from gateway.message import Channel, Message, ScanContext
from gateway.pipeline import Check, Pipeline, PolicyListsCheck, Stage
from gateway.policy import Policy, Strength
from gateway.scoring import load_scores
from gateway.verdict import CHECK_FAILED, Action, Symbol, SymbolSpec


def make_check(name: str, *, stage: Stage = Stage.NORMAL, depends_on: tuple[str, ...] = (),
               weight: float = 1.0, run=None, is_async: bool = True, symbol: str | None = None,
               timeout: float | None = None, channels=frozenset(Channel)) -> Check:
    sym = symbol or f"{name.upper()}_HIT"
    spec = SymbolSpec(sym, "test", f"{name} hit", weight)

    async def arun(self, ctx):
        return await run(ctx) if run else [Symbol(sym)]

    def srun(self, ctx):
        return run(ctx) if run else [Symbol(sym)]

    cls = type(f"C_{name}", (Check,), {
        "name": name, "stage": stage, "depends_on": depends_on, "symbols": (spec,),
        "run": arun if is_async else srun, "timeout": timeout, "channels": channels,
    })
    return cls()


def sms(text: str = "hello") -> Message:
    return Message.sms(text, sender="+819012345678", recipient="+819087654321")


async def test_scores_add_up_and_thresholds_pick_action() -> None:
    checks = [make_check("a", weight=3.0), make_check("b", weight=3.0, is_async=False)]
    p = Pipeline(checks)
    v = await p.scan(sms())
    assert v.score == pytest.approx(6.0)
    assert v.action is Action.TAG  # tag threshold 5 in scores.toml
    assert set(v.symbols) == {"A_HIT", "B_HIT"}


async def test_factor_scales_weight_and_options_explain() -> None:
    def run(ctx):
        return [Symbol("HALF", 0.5, ("why",))]

    p = Pipeline([make_check("half", weight=10.0, run=run, is_async=False, symbol="HALF")])
    v = await p.scan(sms())
    assert v.symbols["HALF"].score == pytest.approx(5.0)
    assert v.symbols["HALF"].options == ("why",)
    assert v.explanations()[0]["description"] == "half hit"


async def test_failing_check_yields_check_failed_and_scan_goes_on() -> None:
    async def boom(ctx):
        raise RuntimeError("secret detail")

    p = Pipeline([make_check("bad", run=boom), make_check("good", weight=2.0)])
    v = await p.scan(sms())
    assert "GOOD_HIT" in v.symbols
    assert CHECK_FAILED in v.symbols
    assert v.failed_checks == ("bad",)
    assert v.symbols[CHECK_FAILED].options == ("bad: RuntimeError",)
    assert "secret detail" not in str(v.to_json())


async def test_slow_check_times_out_alone() -> None:
    async def slow(ctx):
        await asyncio.sleep(10)
        return []

    p = Pipeline([make_check("slow", run=slow, timeout=0.05), make_check("fast", weight=1.0)],
                 deadline=5.0)
    t = time.monotonic()
    v = await p.scan(sms())
    assert time.monotonic() - t < 4.0  # bounded by the check timeout, far below the deadline
    assert v.failed_checks == ("slow",)
    assert "timeout" in v.symbols[CHECK_FAILED].options[0]
    assert "FAST_HIT" in v.symbols


async def test_deadline_cuts_every_unfinished_check() -> None:
    async def slow(ctx):
        await asyncio.sleep(10)
        return []

    checks = [make_check(f"s{i}", run=slow, timeout=30) for i in range(3)]
    p = Pipeline(checks, deadline=0.1)
    v = await p.scan(sms())
    assert sorted(v.failed_checks) == ["s0", "s1", "s2"]
    assert all("deadline" in o for o in v.symbols[CHECK_FAILED].options)


async def test_undeclared_symbol_is_a_check_failure() -> None:
    def run(ctx):
        return [Symbol("NOT_DECLARED")]

    p = Pipeline([make_check("sneaky", run=run, is_async=False)])
    v = await p.scan(sms())
    assert "NOT_DECLARED" not in v.symbols
    assert v.symbols[CHECK_FAILED].options == ("sneaky: undeclared symbol NOT_DECLARED",)


async def test_dependencies_and_stages_run_in_order() -> None:
    order: list[str] = []

    def rec(name, delay=0.0):
        async def run(ctx):
            await asyncio.sleep(delay)
            order.append(name)
            ctx.data[name] = True
            return []
        return run

    checks = [
        make_check("post", stage=Stage.POST, run=rec("post")),
        make_check("dep", depends_on=("base",), run=rec("dep")),
        make_check("base", run=rec("base", 0.05)),
        make_check("pre", stage=Stage.PRE, run=rec("pre", 0.05)),
    ]
    p = Pipeline(checks)
    await p.scan(sms())
    assert order.index("pre") < order.index("base") < order.index("dep") < order.index("post")


async def test_checks_in_a_stage_run_concurrently() -> None:
    async def nap(ctx):
        await asyncio.sleep(0.3)
        return []

    p = Pipeline([make_check(f"n{i}", run=nap) for i in range(5)])
    t = time.monotonic()
    await p.scan(sms())
    # 5 x 0.3 s sequentially would be 1.5 s; concurrency keeps it near 0.3 s.
    assert time.monotonic() - t < 1.2


def test_cycles_unknown_dependencies_and_duplicate_names_refused() -> None:
    with pytest.raises(ConfigError, match="cycle"):
        Pipeline([make_check("a", depends_on=("b",)), make_check("b", depends_on=("a",))])
    with pytest.raises(ConfigError, match="unknown check"):
        Pipeline([make_check("a", depends_on=("zzz",))])
    with pytest.raises(ConfigError, match="share a name"):
        Pipeline([make_check("a"), make_check("a", symbol="OTHER")])
    with pytest.raises(ConfigError, match="later stage"):
        Pipeline([make_check("a", depends_on=("b",)), make_check("b", stage=Stage.POST)])


def test_scores_refuse_unknown_symbols_and_missing_weights(tmp_path) -> None:
    spec = SymbolSpec("KNOWN", "t", "known", 1.0)
    f = tmp_path / "s.toml"
    f.write_text("[symbols]\nUNKNOWN_THING = 3.0\n")
    with pytest.raises(ConfigError, match="undeclared symbols: UNKNOWN_THING"):
        load_scores([spec, *PolicyListsCheck.symbols], scores_file=f)
    with pytest.raises(ConfigError, match="has no weight"):
        load_scores([SymbolSpec("NO_WEIGHT", "t", "x"), *PolicyListsCheck.symbols])
    f.write_text("[thresholds]\nreject = 3.0\n[symbols]\nKNOWN = 7.0\n")
    s = load_scores([spec, *PolicyListsCheck.symbols], scores_file=f)
    assert s.weight("KNOWN") == 7.0
    assert s.action_for(3.5) is Action.REJECT
    with pytest.raises(ConfigError, match="cannot read"):
        load_scores([spec], scores_file=tmp_path / "missing.toml")


def test_configuration_overrides_weights_and_thresholds() -> None:
    spec = SymbolSpec("KNOWN", "t", "known", 1.0)
    s = load_scores([spec, *PolicyListsCheck.symbols], weights={"KNOWN": 20.0},
                    thresholds={"reject": 30.0})
    assert s.weight("KNOWN") == 20.0
    assert s.action_for(25.0) is Action.QUARANTINE


async def test_policy_strength_protection_and_lists() -> None:
    p = Pipeline([make_check("a", weight=10.0), PolicyListsCheck()])
    msg = sms()
    assert (await p.scan(msg, Policy())).action is Action.QUARANTINE  # 10 >= 9
    assert (await p.scan(msg, Policy(strength=Strength.LOW))).action is Action.TAG
    assert (await p.scan(msg, Policy(strength=Strength.HIGH))).action is Action.REJECT
    off = await p.scan(msg, Policy(protection=False))
    assert off.action is Action.ACCEPT and off.reason == "protection off"
    blocked = await p.scan(msg, Policy(block=frozenset({"+819012345678"})))
    assert blocked.action is Action.REJECT and "POLICY_BLOCKLIST" in blocked.symbols
    allowed = await p.scan(msg, Policy(allow=frozenset({"+819012345678"})))
    assert allowed.action is Action.ACCEPT


async def test_decide_per_policy_reuses_one_run() -> None:
    calls = 0

    def run(ctx):
        nonlocal calls
        calls += 1
        return [Symbol("A_HIT")]

    p = Pipeline([make_check("a", weight=10.0, run=run, is_async=False)])
    ctx = ScanContext(sms(), Policy())
    await p.run_checks(ctx)
    v1 = p.decide(ctx, Policy(subscriber="x"))
    v2 = p.decide(ctx, Policy(subscriber="y", protection=False))
    assert calls == 1
    assert v1.action is Action.QUARANTINE and v2.action is Action.ACCEPT
    assert v1.policy_version == "default" and v2.policy_version != "default"


async def test_channel_filter() -> None:
    p = Pipeline([make_check("only_email", channels=frozenset({Channel.EMAIL}))])
    assert (await p.scan(sms())).symbols == {}


async def test_scan_many_of_inline_checks_equals_scan_of_each() -> None:
    """The flat inline pass of `scan_many` and `scan` (every check of the channel inline)
    gives the verdicts of the general `run_checks`: symbols, failures (raised, undeclared symbol, a subclass of
    Symbol, a generator answer, no answer) and their order across stages."""

    class Hit(Symbol):
        pass

    def boom(ctx):
        raise ValueError("bad")

    def undeclared(ctx):
        return [Symbol("NOT_DECLARED")]

    def subclass(ctx):
        return [Hit("SUB")]

    def generator(ctx):
        return (s for s in [Symbol("GEN")] if ctx.message.text != "quiet")

    def nothing(ctx):
        return None

    def depends(ctx):
        return [Symbol("LATE", 0.5, (str(len(ctx.results)),))]

    checks = [
        make_check("first", stage=Stage.PRE, is_async=False),
        make_check("boom", run=boom, is_async=False),
        make_check("undeclared", run=undeclared, is_async=False),
        make_check("sub", run=subclass, is_async=False, symbol="SUB"),
        make_check("gen", run=generator, is_async=False, symbol="GEN"),
        make_check("nothing", run=nothing, is_async=False),
        make_check("late", stage=Stage.POST, run=depends, is_async=False, symbol="LATE",
                   depends_on=("first",)),
    ]
    p = Pipeline(checks)
    msgs = [sms("hello"), sms("quiet"), sms("again")]
    many = await p.scan_many(msgs, [None, Policy(strength=Strength.HIGH), None])
    one = []  # the general path (stages, eager starts) as the reference
    for m, pol in zip(msgs, [None, Policy(strength=Strength.HIGH), None], strict=True):
        ctx = ScanContext(m, pol or Policy(), deadline=time.monotonic() + 5.0)
        await p.run_checks(ctx)
        one.append(p.decide(ctx, ctx.policy))
    single = [await p.scan(m, pol) for m, pol in
              zip(msgs, [None, Policy(strength=Strength.HIGH), None], strict=True)]
    for a, b in [*zip(many, one, strict=True), *zip(single, one, strict=True)]:
        assert (a.action, a.score, a.failed_checks) == (b.action, b.score, b.failed_checks)
        assert {n: (s.score, s.options) for n, s in a.symbols.items()} == \
            {n: (s.score, s.options) for n, s in b.symbols.items()}
        assert list(a.symbols) == list(b.symbols)
    assert set(many[0].failed_checks) == {"boom", "undeclared"}
    assert "SUB" in many[0].symbols and "GEN" in many[0].symbols and "GEN" not in many[1].symbols
    assert many[0].symbols["LATE"].options == ("6",)  # every earlier check had answered


async def test_scan_many_inline_past_the_deadline_fails_the_rest() -> None:
    def slow(ctx):
        time.sleep(0.05)
        return []

    p = Pipeline([make_check("slow", stage=Stage.PRE, run=slow, is_async=False),
                  make_check("after", is_async=False)], deadline=0.01)
    (v,) = await p.scan_many([sms()], [None])
    assert v.failed_checks == ("after",)
    assert "deadline" in v.symbols[CHECK_FAILED].options[0]
