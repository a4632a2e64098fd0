"""The scanning pipeline.

Checks declare their symbols, stage and dependencies. Within a message, stages run in order
(connect, pre, normal, post); inside a stage, checks run concurrently as far as their
`depends_on` allows, each under its own timeout, all under one deadline. A check that raises,
times out, is cut by the deadline, or emits an undeclared symbol yields `CHECK_FAILED` (with
the check and the reason as options) and the scan goes on.

Synchronous checks (a plain `def run`) are cheap by contract and run inline, without a task:
that keeps the SMS path at carrier speed. Anything CPU-heavy is async and batches or uses an
executor. An async check is started eagerly: its coroutine runs in place up to its first
suspension, so one that needs no I/O this time (cached DNS, unsigned mail) costs no task,
timer or wait; only one that really suspends becomes a task under its timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any, ClassVar

from gateway.errors import ConfigError
from gateway.message import Channel, Message, ScanContext
from gateway.metrics import CHECK_FAILURES, SCAN_SECONDS, SCANNED
from gateway.policy import DEFAULT_POLICY, Policy, list_matches
from gateway.scoring import Scores, load_scores
from gateway.verdict import (
    CHECK_FAILED,
    Action,
    CheckResult,
    ScoredSymbol,
    Symbol,
    SymbolSpec,
    Verdict,
)

log = logging.getLogger("mamori.pipeline")

# metric children by label values, looked up once (a labels() call per message costs more
# than some checks)
_SCANNED: dict[tuple[str, Action], Any] = {}
_SCAN_SECONDS: dict[str, Any] = {}
# messages of a batch scanned check by check together (Pipeline._scan_check_major)
CHECK_MAJOR_GROUP = 16


class Stage(IntEnum):
    CONNECT = 0
    PRE = 1
    NORMAL = 2
    POST = 3


class Check:
    """Base class of every check (built-in or plugin).

    Subclasses set the class attributes and implement `run(ctx)` as `def` (cheap, inline) or
    `async def`. `run` returns the symbols that hit; it must not mutate the message. Optional
    lifecycle: `async start()` before serving, `async close()` at shutdown.
    """

    name: ClassVar[str]
    symbols: ClassVar[tuple[SymbolSpec, ...]] = ()
    stage: ClassVar[Stage] = Stage.NORMAL
    depends_on: ClassVar[tuple[str, ...]] = ()
    channels: ClassVar[frozenset[Channel]] = frozenset(Channel)
    timeout: float | None = None  # None: the pipeline default

    def run(self, ctx: ScanContext) -> Sequence[Symbol] | Awaitable[Sequence[Symbol]]:
        raise NotImplementedError

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


PluginFactory = Callable[[Any], Iterable[Check]]


class Pipeline:
    def __init__(
        self,
        checks: Sequence[Check],
        scores: Scores | None = None,
        *,
        deadline: float = 5.0,
        check_timeout: float = 2.0,
        check_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        self.checks = _order(checks)
        self.by_name = {c.name: c for c in self.checks}
        self.specs: dict[str, SymbolSpec] = {}
        self._declared: dict[str, frozenset[str]] = {}
        for c in self.checks:
            for spec in c.symbols:
                if spec.name in self.specs and self.specs[spec.name] != spec:
                    raise ConfigError(f"symbol {spec.name} declared twice with different specs")
                self.specs[spec.name] = spec
            self._declared[c.name] = frozenset(s.name for s in c.symbols)
        self.scores = scores or load_scores(self.specs.values())
        self._shown_thresholds: dict[tuple[Any, ...], dict[str, float]] = {}
        self.deadline = deadline
        self.timeouts = {
            c.name: (check_timeouts or {}).get(c.name, c.timeout or check_timeout) for c in self.checks
        }
        self._is_async = {c.name: inspect.iscoroutinefunction(c.run) for c in self.checks}
        self._stages: dict[Channel, tuple[tuple[Check, ...], ...]] = {
            ch: tuple(
                t
                for t in (
                    tuple(c for c in self.checks if ch in c.channels and c.stage == st)
                    for st in Stage
                )
                if t
            )
            for ch in Channel
        }
        # channels whose checks are all inline (a batch needs no task per message), and the
        # checks with a batch entry point (`prescore`) by channel
        self._all_sync = {ch: not any(self._is_async[c.name] for st in self._stages[ch] for c in st)
                          for ch in Channel}
        self._flat = {ch: tuple(c for st in self._stages[ch] for c in st) for ch in Channel}
        self._batched: dict[Channel, tuple[Check, ...]] = {
            ch: t for ch in Channel
            if (t := tuple(c for st in self._stages[ch] for c in st
                           if callable(getattr(c, "prescore", None))))
        }

    async def start(self) -> None:
        for c in self.checks:
            await c.start()

    async def close(self) -> None:
        for c in self.checks:
            try:
                await c.close()
            except Exception:
                log.exception("check %s failed to close", c.name)

    # -- running -----------------------------------------------------------------------

    async def scan(self, message: Message, policy: Policy | None = None) -> Verdict:
        """Run every applicable check on the message and decide for `policy`."""
        t0 = time.monotonic()
        policy = policy or DEFAULT_POLICY
        ctx = ScanContext(message, policy, deadline=t0 + self.deadline)
        if self._all_sync[message.channel]:
            self._run_inline(ctx)
        else:
            await self.run_checks(ctx)
        return self._verdict(ctx, t0)

    async def scan_many(self, messages: Sequence[Message],
                        policies: Sequence[Policy | None]) -> list[Verdict]:
        """The verdicts of many messages, in order: the same as `scan` of each in turn.

        Checks that offer a batch entry point (`prescore(ctxs)`, e.g. the classifier scoring
        many messages in one vectorised pass) get all the messages of their channel first; a
        failing batch entry point is ignored (each message's own `run` then decides). When
        every check of a message's channel is synchronous, the messages are scanned one after
        the other without a task each; otherwise concurrently."""
        t0 = time.monotonic()
        ctxs = [ScanContext(m, p or DEFAULT_POLICY, deadline=t0 + self.deadline)
                for m, p in zip(messages, policies, strict=True)]
        for channel, checks in self._batched.items():
            chosen = [c for c in ctxs if c.message.channel is channel]
            if not chosen:
                continue
            for check in checks:
                try:
                    check.prescore(chosen)  # type: ignore[attr-defined]
                except Exception as exc:
                    log.debug("batch entry point of %s failed: %s", check.name,
                              type(exc).__name__)
        if all(self._all_sync[c.message.channel] for c in ctxs):
            channels = {c.message.channel for c in ctxs}
            if len(ctxs) > 1 and len(channels) == 1:
                return self._scan_check_major(ctxs, self._flat[channels.pop()])
            out = []
            for ctx in ctxs:
                t = time.monotonic()
                ctx.deadline = t + self.deadline  # each message has its own deadline
                self._run_inline(ctx)
                out.append(self._verdict(ctx, t))
            return out

        async def one(ctx: ScanContext) -> Verdict:
            t = time.monotonic()
            ctx.deadline = t + self.deadline
            await self.run_checks(ctx)
            return self._verdict(ctx, t)

        return list(await asyncio.gather(*(one(c) for c in ctxs)))

    def _scan_check_major(self, ctxs: Sequence[ScanContext],
                          checks: Sequence[Check]) -> list[Verdict]:
        """Inline scans of messages of one channel, check by check over groups of
        `CHECK_MAJOR_GROUP` messages: each check's code and tables stay in the CPU caches
        across the group instead of being evicted by the other checks between two messages.

        The same results as `_run_inline` of each message in turn: a check still sees each
        message after the earlier checks of that message, and the messages in order (a flood
        counter counts them in the same order); checks share no state of one message with
        another. Time is each message's own, as if it had been scanned alone: its deadline
        is counted over the time its own checks took (`ctx.deadline` is set before each of
        its checks to now plus what is left), and so is its elapsed time."""
        out: list[Verdict] = []
        run, limit = self._run_sync, self.deadline
        now = time.monotonic
        for k in range(0, len(ctxs), CHECK_MAJOR_GROUP):
            group = ctxs[k:k + CHECK_MAJOR_GROUP]
            spent = [0.0] * len(group)
            for check in checks:
                for i, ctx in enumerate(group):
                    ctx.deadline = now() + (limit - spent[i])
                    result = run(check, ctx)
                    spent[i] += result.elapsed
                    ctx.results[result.check] = result  # `_record`
                    if result.error is not None:
                        CHECK_FAILURES.labels(result.check).inc()
            for i, ctx in enumerate(group):
                out.append(self._verdict(ctx, now() - spent[i]))
        return out

    def _verdict(self, ctx: ScanContext, t0: float) -> Verdict:
        verdict = self.decide(ctx, ctx.policy, elapsed=time.monotonic() - t0)
        ch = ctx.message.channel  # a StrEnum: the same dict key as its value
        counter = _SCANNED.get((ch, verdict.action))
        if counter is None:
            counter = _SCANNED[(ch, verdict.action)] = SCANNED.labels(ch.value,
                                                                      verdict.action.value)
        counter.inc()
        hist = _SCAN_SECONDS.get(ch)
        if hist is None:
            hist = _SCAN_SECONDS[ch] = SCAN_SECONDS.labels(ch.value)
        hist.observe(time.monotonic() - t0)
        return verdict

    def _run_inline(self, ctx: ScanContext) -> None:
        """`run_checks` for a channel whose checks are all inline: the same results in the
        same order (stages in order, each check once), without the per-stage bookkeeping
        that async checks need."""
        results, run = ctx.results, self._run_sync
        for check in self._flat[ctx.message.channel]:
            result = run(check, ctx)
            results[result.check] = result  # `_record`
            if result.error is not None:
                CHECK_FAILURES.labels(result.check).inc()

    async def run_checks(self, ctx: ScanContext) -> None:
        for stage_checks in self._stages[ctx.message.channel]:
            # inline checks first (as they always ran before any async check's first step),
            # then the rest in order, each started eagerly (see `_start`)
            queued: list[Check] = []
            names: set[str] = set()
            for check in stage_checks:
                if not self._is_async[check.name] and not names.intersection(check.depends_on):
                    self._record(ctx, self._run_sync(check, ctx))
                    continue
                queued.append(check)
                names.add(check.name)
            if not queued:
                continue
            pending: dict[str, asyncio.Future[CheckResult] | CheckResult] = {}
            tasks = False
            for check in queued:
                deps = [f for d in check.depends_on
                        if (f := pending.get(d)) is not None and f.__class__ is not CheckResult]
                if deps:
                    pending[check.name] = asyncio.ensure_future(
                        self._run_async(check, ctx, deps))  # type: ignore[arg-type]
                else:
                    pending[check.name] = out = self._start(check, ctx)
                    if out.__class__ is CheckResult:
                        continue
                tasks = True
            if tasks:
                await self._settle(ctx, pending)
            else:
                for result in pending.values():
                    self._record(ctx, result)  # type: ignore[arg-type]

    async def _settle(self, ctx: ScanContext,
                      pending: dict[str, asyncio.Future[CheckResult] | CheckResult]) -> None:
        running = [f for f in pending.values() if f.__class__ is not CheckResult]
        done, not_done = await asyncio.wait(running,  # type: ignore[type-var]
                                            timeout=max(ctx.time_left(), 0.0))
        for task in not_done:
            task.cancel()  # type: ignore[union-attr]
        if not_done:
            await asyncio.gather(*not_done, return_exceptions=True)  # type: ignore[arg-type]
        for name, task in pending.items():
            if isinstance(task, CheckResult):
                self._record(ctx, task)
            elif task in done and not task.cancelled() and task.exception() is None:
                self._record(ctx, task.result())
            else:
                self._record(ctx, CheckResult(name, error="deadline"))

    def _start(self, check: Check, ctx: ScanContext) -> asyncio.Future[CheckResult] | CheckResult:
        """Start a check eagerly: its result when its coroutine finishes without suspending
        (no task, no timer: an auth check on unsigned mail, cached DNS), otherwise a task that
        runs the rest under the check's timeout, counted from now.

        The first step runs as a task's would: in a copy of the context (context variables
        set there stay the check's own) and with `asyncio.current_task()` a stand-in for the
        task that takes over if the coroutine suspends (so `asyncio.timeout` and cancellation
        inside the check act on that task)."""
        t = time.perf_counter()
        loop = asyncio.get_running_loop()
        left = max(ctx.time_left(), 0.0)
        limit = self.timeouts[check.name]
        timeout = min(limit, left)
        when = loop.time() + timeout
        try:
            out = check.run(ctx)
        except Exception as exc:
            return self._failure(check, exc, time.perf_counter() - t)
        if out.__class__ is not _CoroutineType:
            if not inspect.isawaitable(out):
                return self._validate(check, out, time.perf_counter() - t)
            rest: Awaitable[Any] = out  # another awaitable: awaited in a task as before
            context = None
            standin = None
        else:
            context = contextvars.copy_context()
            standin = _TaskStandIn()
            try:
                yielded = context.run(_first_step, loop, standin, out)
            except StopIteration as stop:
                return self._validate(check, stop.value, time.perf_counter() - t)
            except asyncio.CancelledError:
                return CheckResult(check.name, error="deadline")
            except Exception as exc:
                return self._failure(check, exc, time.perf_counter() - t)
            rest = _resume(out, yielded)
        task = loop.create_task(self._finish(check, rest, t, when, timeout, left < limit),
                                context=context)
        if standin is not None:
            standin.attach(task)
        return task

    async def _finish(self, check: Check, rest: Awaitable[Any], t: float, when: float,
                      timeout: float, cut_by_deadline: bool) -> CheckResult:
        """The rest of an eagerly started check, under the timeout set when it started."""
        try:
            async with asyncio.timeout_at(when):
                out = await rest
            return self._validate(check, out, time.perf_counter() - t)
        except TimeoutError:
            cause = "deadline" if cut_by_deadline else f"timeout after {timeout:.3f}s"
            return CheckResult(check.name, error=cause, elapsed=time.perf_counter() - t)
        except Exception as exc:
            return self._failure(check, exc, time.perf_counter() - t)

    def _run_sync(self, check: Check, ctx: ScanContext) -> CheckResult:
        t = time.perf_counter()
        try:
            deadline = ctx.deadline  # `ctx.time_left() <= 0`, without the call
            if deadline is not None and deadline - time.monotonic() <= 0:
                return CheckResult(check.name, error="deadline")
            out = check.run(ctx)
            if out.__class__ is not list and out.__class__ is not tuple:  # the usual answers
                assert not inspect.isawaitable(out)
            if not out:  # `_validate`'s first answer, without the call
                return CheckResult(check.name, (), None, time.perf_counter() - t)
            return self._validate(check, out, time.perf_counter() - t)
        except Exception as exc:
            return self._failure(check, exc, time.perf_counter() - t)

    async def _run_async(
        self, check: Check, ctx: ScanContext, deps: list[asyncio.Task[CheckResult]]
    ) -> CheckResult:
        if deps:
            await asyncio.wait(deps)
        t = time.perf_counter()
        left = max(ctx.time_left(), 0.0)
        timeout = min(self.timeouts[check.name], left)
        cause = "deadline" if left < self.timeouts[check.name] else f"timeout after {timeout:.3f}s"
        try:
            out = check.run(ctx)
            if inspect.isawaitable(out):
                async with asyncio.timeout(timeout):
                    out = await out
            return self._validate(check, out, time.perf_counter() - t)
        except TimeoutError:
            return CheckResult(check.name, error=cause, elapsed=time.perf_counter() - t)
        except Exception as exc:
            return self._failure(check, exc, time.perf_counter() - t)

    def _validate(self, check: Check, out: Any, elapsed: float) -> CheckResult:
        if not out:
            return CheckResult(check.name, (), None, elapsed)
        symbols = tuple(out)
        declared = self._declared[check.name]
        for s in symbols:
            if not isinstance(s, Symbol) or s.name not in declared:
                name = getattr(s, "name", repr(s))
                return CheckResult(check.name, error=f"undeclared symbol {name}", elapsed=elapsed)
        return CheckResult(check.name, symbols, None, elapsed)

    @staticmethod
    def _failure(check: Check, exc: BaseException, elapsed: float) -> CheckResult:
        log.warning("check %s failed: %s", check.name, type(exc).__name__,
                    exc_info=log.isEnabledFor(logging.DEBUG))
        return CheckResult(check.name, error=type(exc).__name__, elapsed=elapsed)

    @staticmethod
    def _record(ctx: ScanContext, result: CheckResult) -> None:
        ctx.results[result.check] = result
        if result.error is not None:
            CHECK_FAILURES.labels(result.check).inc()

    # -- deciding ------------------------------------------------------------------------

    def decide(self, ctx: ScanContext, policy: Policy, *, elapsed: float = 0.0) -> Verdict:
        """Turn the check results into a verdict for one policy (reusable per recipient)."""
        scores = self.scores
        specs = self.specs
        own_weights = policy.weights
        symbols: dict[str, ScoredSymbol] = {}
        failed: list[str] = []
        total = 0.0
        for result in ctx.results.values():
            if result.error is not None:
                failed.append(result.check)
                prev = symbols.get(CHECK_FAILED)
                opts = (*(prev.options if prev else ()), f"{result.check}: {result.error}")
                w = scores.weight(CHECK_FAILED)
                symbols[CHECK_FAILED] = ScoredSymbol(
                    CHECK_FAILED, w * len(opts), opts, self.specs.get(CHECK_FAILED, _CF).description
                )
                continue
            for s in result.symbols:
                name = s.name
                # the policy's weight, else the table's (`.get(name, scores.weight(name))`)
                weight = own_weights[name] if own_weights and name in own_weights \
                    else scores.weight(name)
                score = weight * s.factor
                spec = specs[name]
                if name in symbols:  # the same symbol twice: keep the stronger, merge options
                    old = symbols[s.name]
                    score = max(score, old.score)
                    opts = old.options + tuple(o for o in s.options if o not in old.options)
                    symbols[s.name] = ScoredSymbol(s.name, score, opts, spec.description)
                else:
                    symbols[s.name] = ScoredSymbol(s.name, score, s.options, spec.description)
        total = sum(s.score for s in symbols.values())
        multiplier = policy.threshold_multiplier(scores.strength)
        action = scores.action_for(total, multiplier)
        reason = ""
        force = scores.force_actions
        if force:
            for name in symbols:
                forced = force.get(name)
                if forced is not None and (forced.severity > action.severity
                                           or (forced is action and not reason)):
                    action, reason = forced, name
        if not policy.protection and action is not Action.ACCEPT:
            action, reason = Action.ACCEPT, "protection off"
        # thresholds as applied to this policy, for explanations (computed once per multiplier
        # and table; each verdict gets its own copy)
        key = (multiplier, *scores.thresholds.items())
        shown = self._shown_thresholds.get(key)
        if shown is None:
            shown = {a.value: round(t * multiplier, 3) for a, t in scores.thresholds.items()}
            if len(self._shown_thresholds) < 64:
                self._shown_thresholds[key] = shown
        thresholds = dict(shown)
        return Verdict(
            message_id=ctx.message.id,
            channel=_CHANNEL_VALUE[ctx.message.channel],
            action=action,
            score=total,
            symbols=symbols,
            thresholds=thresholds,
            subscriber=policy.subscriber,
            policy_version=policy.version,
            model_version=ctx.versions.get("model"),
            versions=dict(ctx.versions),
            failed_checks=tuple(failed),
            headers=tuple(ctx.extra_headers),
            elapsed_ms=elapsed * 1000.0,
            reason=reason,
        )


_CF = SymbolSpec(CHECK_FAILED, "pipeline", "a check failed or timed out", 0.0)
_CHANNEL_VALUE = {c: c.value for c in Channel}  # (Enum.value is a property: a call per read)


def _order(checks: Sequence[Check]) -> list[Check]:
    """Order checks by stage, then topologically by depends_on; refuse cycles and unknowns."""
    names = {c.name for c in checks}
    if len(names) != len(checks):
        raise ConfigError("two checks share a name")
    for c in checks:
        for d in c.depends_on:
            if d not in names:
                raise ConfigError(f"check {c.name} depends on unknown check {d}")
    by_name = {c.name: c for c in checks}
    out: list[Check] = []
    state: dict[str, int] = {}

    def visit(c: Check) -> None:
        st = state.get(c.name)
        if st == 2:
            return
        if st == 1:
            raise ConfigError(f"dependency cycle through check {c.name}")
        state[c.name] = 1
        for d in c.depends_on:
            dep = by_name[d]
            if dep.stage > c.stage:
                raise ConfigError(f"check {c.name} depends on {d}, which runs in a later stage")
            visit(dep)
        state[c.name] = 2
        out.append(c)

    for c in sorted(checks, key=lambda c: (c.stage, c.name)):
        visit(c)
    # stable by stage: dependencies are never in a later stage, so this keeps topo order
    out.sort(key=lambda c: c.stage)
    return out


# -- eager start of a check's coroutine (Python 3.11 has no eager task factory) ---------------

_CoroutineType = types.CoroutineType
_enter_task: Callable[[asyncio.AbstractEventLoop, Any], None] = asyncio.tasks._enter_task
_leave_task: Callable[[asyncio.AbstractEventLoop, Any], None] = asyncio.tasks._leave_task


class _TaskStandIn:
    """`asyncio.current_task()` during a check's eager first step: forwards to the task that
    runs the rest once there is one (an `asyncio.timeout` entered in the first step cancels
    that task, as it would have without the eager start)."""

    __slots__ = ("_cancel", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self._cancel: tuple[Any, ...] | None = None

    def attach(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        if self._cancel is not None:
            task.cancel(*self._cancel)

    def cancel(self, msg: Any = None) -> bool:
        if self.task is not None:
            return self.task.cancel(msg)
        self._cancel = (msg,)
        return True

    def cancelling(self) -> int:
        if self.task is not None:
            return self.task.cancelling()
        return 1 if self._cancel is not None else 0

    def uncancel(self) -> int:
        if self.task is not None:
            return self.task.uncancel()
        self._cancel = None
        return 0

    def done(self) -> bool:
        return self.task is not None and self.task.done()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop() if self.task is None else self.task.get_loop()


def _first_step(loop: asyncio.AbstractEventLoop, standin: _TaskStandIn,
                coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine up to its first suspension with `standin` as the current task; what it
    yielded (raises StopIteration with its value when it returned)."""
    outer = asyncio.current_task(loop)
    if outer is not None:
        _leave_task(loop, outer)
    _enter_task(loop, standin)
    try:
        return coro.send(None)
    finally:
        _leave_task(loop, standin)
        if outer is not None:
            _enter_task(loop, outer)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, None, Any]:
    """Await the rest of a coroutine that already suspended once on `yielded` (a future, or
    None for a bare yield): hands that to the task, then relays the task's sends and throws
    (cancellation) to the coroutine, as `await` would have."""
    while True:
        try:
            yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(None)
            except StopIteration as stop:
                return stop.value


# -- the built-in policy check -----------------------------------------------------------


class PolicyListsCheck(Check):
    """The subscriber's own allow and block lists (numbers, sender IDs, domains, addresses)."""

    name = "policy_lists"
    stage = Stage.PRE
    symbols = (
        SymbolSpec("POLICY_ALLOWLIST", "policy", "the sender is on the subscriber's allow list"),
        SymbolSpec("POLICY_BLOCKLIST", "policy", "the sender is on the subscriber's block list"),
    )

    def run(self, ctx: ScanContext) -> list[Symbol]:
        p = ctx.policy
        if not p.allow and not p.block:
            return []
        m = ctx.message
        parties = [m.sender]
        if m.channel is Channel.EMAIL:
            parties.append(_addr(m.header("From")))
        out: list[Symbol] = []
        for party in parties:
            hit = list_matches(p.block, party)
            if hit:
                out.append(Symbol("POLICY_BLOCKLIST", 1.0, (hit,)))
                break
        else:
            for party in parties:
                hit = list_matches(p.allow, party)
                if hit:
                    out.append(Symbol("POLICY_ALLOWLIST", 1.0, (hit,)))
                    break
        return out


def _addr(value: str) -> str:
    if "<" in value and ">" in value:
        return value[value.rfind("<") + 1 : value.rfind(">")]
    return value.strip()
