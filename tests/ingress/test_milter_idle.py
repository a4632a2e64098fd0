"""The milter's idle limit on reads (one timer per idle period, not one per read)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.ingress.milter import IdleWatch


async def reads(watch: IdleWatch, waits: list[float], busy: float = 0.0) -> str:
    """Waits like reads (each `waits[i]` seconds), working `busy` seconds between them (not
    reading); 'ok', or 'idle' when the watch cut a read."""
    loop = asyncio.get_running_loop()
    try:
        for w in waits:
            watch.since = loop.time()
            try:
                await asyncio.sleep(w)
            except asyncio.CancelledError:
                if watch.expired():
                    return "idle"
                raise
            watch.since = None
            if busy:
                await asyncio.sleep(busy)  # work between reads does not count
        return "ok"
    finally:
        watch.stop()


async def run_with_watch(idle: float, waits: list[float], busy: float = 0.0) -> str:
    async def body() -> str:
        return await reads(IdleWatch(asyncio.get_running_loop(), idle), waits, busy)

    return await asyncio.create_task(body())


async def test_a_read_waiting_past_the_limit_is_cut() -> None:
    assert await run_with_watch(0.05, [0.01, 5.0]) == "idle"


async def test_many_short_reads_are_not_cut_however_long_the_connection() -> None:
    assert await run_with_watch(0.06, [0.02] * 10) == "ok"


async def test_time_spent_between_reads_does_not_count() -> None:
    assert await run_with_watch(0.05, [0.01, 0.01], busy=0.12) == "ok"


async def test_someone_elses_cancellation_stays_a_cancellation() -> None:
    async def body() -> str:
        return await reads(IdleWatch(asyncio.get_running_loop(), 5.0), [5.0])

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def read_cut_by_the_timer() -> asyncio.Task[str]:
    """A task in a read that has waited past its limit, the watch's timer just fired."""
    watches: list[IdleWatch] = []

    async def body() -> str:
        watches.append(IdleWatch(asyncio.get_running_loop(), 5.0))
        return await reads(watches[0], [5.0])

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    watch = watches[0]
    assert watch.since is not None
    watch.since -= 10.0
    watch._check()
    return task


async def test_the_timer_cuts_the_read() -> None:
    assert await (await read_cut_by_the_timer()) == "idle"


async def test_a_shutdown_racing_the_limit_stays_a_cancellation() -> None:
    task = await read_cut_by_the_timer()
    task.cancel()  # a shutdown cancels the task before it runs again
    with pytest.raises(asyncio.CancelledError):
        await task
