"""The soak's leak detector on synthetic series: it must fail a leak and pass a bounded curve
(fast unit tests; the soak itself is tests/soak/test_soak.py)."""

from __future__ import annotations

import math
import random

import pytest

from tests.soak.leak import trend

MIB = 1024.0  # the soak samples RSS in KiB


def series(fn, seconds: float = 600.0, n: int = 240, noise: float = 1.5 * MIB, seed: int = 1):
    r = random.Random(seed)
    return [(t, fn(t) + r.uniform(-noise, noise)) for t in (i * seconds / n for i in range(n))]


def judge(samples):
    return trend(samples, floor=8 * MIB, fraction=0.02)


def test_flat_after_warmup_passes() -> None:
    # grows 60 MiB while caches fill in the first two minutes, then levels off
    t = judge(series(lambda t: 200 * MIB + 60 * MIB * min(t, 120) / 120))
    assert t.flat, t


def test_cache_filling_to_its_bound_during_warmup_passes() -> None:
    # exponential approach to a bound (an LRU filling with ever fewer new keys)
    t = judge(series(lambda t: 200 * MIB + 40 * MIB * (1 - math.exp(-t / 40))))
    assert t.flat, t


def test_saw_tooth_bounded_passes() -> None:
    # a cache cleared when full: 0..20 MiB every 90 s, for the whole run
    t = judge(series(lambda t: 220 * MIB + 20 * MIB * ((t % 90) / 90)))
    assert t.flat, t


def test_steady_leak_fails() -> None:
    # 400 bytes per message at 110 messages a second: 2.6 MiB a minute
    t = judge(series(lambda t: 220 * MIB + 400 * 110 * t / 1024))
    assert not t.flat, t


def test_leak_starting_late_fails() -> None:
    t = judge(series(lambda t: 220 * MIB + (0 if t < 300 else 30 * MIB * (t - 300) / 300)))
    assert not t.flat, t


def test_last_run_before_the_bounds_fails() -> None:
    # the shape of the committed run before the caches were bounded: 240 -> 270 MiB, linear
    t = judge(series(lambda t: 240 * MIB + 30 * MIB * t / 600))
    assert not t.flat, t


def test_one_allocator_step_in_the_second_half_passes() -> None:
    # glibc taking a 4 MiB step once (a new heap segment) is not a leak
    t = judge(series(lambda t: 230 * MIB + (4 * MIB if t > 450 else 0)))
    assert t.flat, t


def test_descriptor_leak_fails_and_steady_pool_passes() -> None:
    leak = [(float(i), 26.0 + i // 20) for i in range(240)]  # one socket every 20 samples
    pool = [(float(i), 26.0 + (i % 3)) for i in range(240)]
    assert not trend(leak, floor=4, fraction=0.0).flat
    assert trend(pool, floor=4, fraction=0.0).flat


def test_too_few_samples_is_an_error() -> None:
    with pytest.raises(ValueError):
        trend([(0.0, 1.0)] * 3, floor=1, fraction=0)
