"""The pipeline's eager start of async checks: a coroutine that finishes without suspending
costs no task; one that suspends continues in a task under the timeout set when it started,
with the same results, failures, cancellation and context isolation as a task from the start."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from gateway.message import Message
from gateway.pipeline import Check, Pipeline, Stage
from gateway.verdict import CHECK_FAILED, Symbol, SymbolSpec

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("eager_test_var", default="unset")


def make_check(name: str, run, *, is_async: bool = True, timeout: float | None = None,
               depends_on: tuple[str, ...] = ()) -> Check:
    sym = f"{name.upper()}_HIT"

    async def arun(self, ctx):
        return await run(sym)

    def srun(self, ctx):
        return run(sym)

    cls = type(f"E_{name}", (Check,), {
        "name": name, "stage": Stage.NORMAL, "depends_on": depends_on,
        "symbols": (SymbolSpec(sym, "test", name, 1.0),),
        "run": arun if is_async else srun, "timeout": timeout,
    })
    return cls()


def sms() -> Message:
    return Message.sms("hello", sender="+819012345678", recipient="+819087654321")


class Counting:
    """A task factory counting the tasks the loop creates."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, loop, coro, **kw):
        self.n += 1
        return asyncio.Task(coro, loop=loop, **kw)


async def scan_counting(p: Pipeline):
    loop = asyncio.get_running_loop()
    factory = Counting()
    loop.set_task_factory(factory)
    try:
        v = await p.scan(sms())
    finally:
        loop.set_task_factory(None)
    return v, factory.n


def failure(v, name: str) -> str:
    assert CHECK_FAILED in v.symbols, v.symbols
    opts = [o for o in v.symbols[CHECK_FAILED].options if o.startswith(f"{name}: ")]
    assert len(opts) == 1, v.symbols[CHECK_FAILED].options
    return opts[0].split(": ", 1)[1]


async def test_immediate_return_needs_no_task() -> None:
    async def run(sym):
        return [Symbol(sym)]

    v, tasks = await scan_counting(Pipeline([make_check("a", run), make_check("b", run)]))
    assert set(v.symbols) == {"A_HIT", "B_HIT"}
    assert tasks == 0


async def test_immediate_raise_is_check_failed() -> None:
    async def run(sym):
        raise ValueError("boom")

    v, tasks = await scan_counting(Pipeline([make_check("a", run)]))
    assert failure(v, "a") == "ValueError"
    assert tasks == 0


async def test_suspend_then_return_and_suspend_then_raise() -> None:
    async def ok(sym):
        await asyncio.sleep(0)  # a bare yield
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, sym)
        return [Symbol(await fut)]  # a future, its result

    async def bad(sym):
        await asyncio.sleep(0.001)
        raise KeyError("x")

    v, tasks = await scan_counting(Pipeline([make_check("a", ok), make_check("b", bad)]))
    assert "A_HIT" in v.symbols
    assert failure(v, "b") == "KeyError"
    assert tasks == 2


async def test_suspend_past_the_timeout_counts_from_the_start() -> None:
    cancelled = []

    async def slow(sym):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(sym)
            raise
        return [Symbol(sym)]

    async def fast(sym):
        return [Symbol(sym)]

    p = Pipeline([make_check("slow", slow, timeout=0.05), make_check("fast", fast)])
    v = await p.scan(sms())
    assert failure(v, "slow") == "timeout after 0.050s"
    assert cancelled == ["SLOW_HIT"]
    assert "FAST_HIT" in v.symbols


async def test_deadline_reached() -> None:
    async def slow(sym):
        await asyncio.sleep(5)
        return [Symbol(sym)]

    p = Pipeline([make_check("slow", slow, timeout=2.0)], deadline=0.05)
    v = await p.scan(sms())
    assert failure(v, "slow") == "deadline"


async def test_timeout_entered_in_the_first_step_acts_on_the_checks_task() -> None:
    seen = []

    async def run(sym):
        try:
            async with asyncio.timeout(0.02):  # entered before the first suspension
                await asyncio.sleep(5)
        except TimeoutError:
            seen.append(asyncio.current_task() is not None)
            return [Symbol(sym)]
        return []

    async def other(sym):
        await asyncio.sleep(0.05)
        return [Symbol(sym)]

    outer = asyncio.current_task()
    v = await Pipeline([make_check("a", run), make_check("b", other)]).scan(sms())
    assert {"A_HIT", "B_HIT"} <= set(v.symbols)
    assert seen == [True]
    assert outer is not None and not outer.cancelling()


async def test_context_variables_stay_the_checks_own() -> None:
    seen = {}

    async def setter(sym):
        token = VAR.set(sym)
        await asyncio.sleep(0)
        seen[sym] = VAR.get()
        VAR.reset(token)  # a token from the first step, used in the task
        return [Symbol(sym)]

    async def eager_setter(sym):
        VAR.set(sym)
        return [Symbol(sym)]

    async def reader(sym):
        seen[sym] = VAR.get()
        return [Symbol(sym)]

    p = Pipeline([make_check("a", setter), make_check("b", eager_setter), make_check("c", reader)])
    v = await p.scan(sms())
    assert CHECK_FAILED not in v.symbols
    assert seen == {"A_HIT": "A_HIT", "C_HIT": "unset"}
    assert VAR.get() == "unset"


async def test_results_keep_their_order_and_dependencies_wait() -> None:
    order = []

    async def eager(sym):
        order.append(sym)
        return [Symbol(sym)]

    async def suspends(sym):
        order.append(sym)
        await asyncio.sleep(0.01)
        order.append(f"{sym} done")
        return [Symbol(sym)]

    def sync(sym):
        order.append(sym)
        return [Symbol(sym)]

    checks = [
        make_check("a", eager), make_check("b", suspends),
        make_check("c", eager, depends_on=("a",)),  # its dependency is done: eager
        make_check("d", sync, is_async=False, depends_on=("b",)),  # waits for b
        make_check("e", sync, is_async=False),
    ]
    v = await Pipeline(checks).scan(sms())
    # inline checks first, then the rest in order, a dependant after what it waits for
    assert order == ["E_HIT", "A_HIT", "B_HIT", "C_HIT", "B_HIT done", "D_HIT"]
    assert list(v.symbols) == ["E_HIT", "A_HIT", "B_HIT", "C_HIT", "D_HIT"]


async def test_other_awaitables_and_plain_results_from_async_entry() -> None:
    def returns_future(sym):
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.001, fut.set_result, [Symbol(sym)])
        return fut

    def plain(sym):
        return [Symbol(sym)]

    async def eager(sym):
        return [Symbol(sym)]

    # a plain `def` with a dependency runs after it (here started eagerly, the dependency
    # being done), and an awaitable it returns is still awaited
    checks = [make_check("z", eager),
              make_check("a", returns_future, is_async=False, depends_on=("z",)),
              make_check("b", plain, is_async=False, depends_on=("a",))]
    v = await Pipeline(checks).scan(sms())
    assert {"Z_HIT", "A_HIT", "B_HIT"} == set(v.symbols)


async def test_a_check_cancelling_itself_eagerly_is_a_deadline() -> None:
    async def run(sym):
        raise asyncio.CancelledError

    v = await Pipeline([make_check("a", run)]).scan(sms())
    assert failure(v, "a") == "deadline"


def test_every_path_on_uvloop() -> None:
    """`mamori serve` runs on uvloop when installed: the same paths there."""
    import inspect
    import sys

    uvloop = pytest.importorskip("uvloop")
    here = sys.modules[__name__]
    tests = [f for n, f in inspect.getmembers(here, inspect.iscoroutinefunction)
             if n.startswith("test_")]
    assert len(tests) >= 9
    for test in tests:
        uvloop.run(test())
