"""Message and event ids, and the policy copy made for each unknown subscriber: the fast
paths give what the library calls they replace give."""

from __future__ import annotations

import uuid
from dataclasses import FrozenInstanceError, fields, replace

import pytest

from gateway.ids import new_id
from gateway.policy import DEFAULT_POLICY, OnBlock, Policy, Strength


def test_new_id_is_a_version_4_uuid_in_hex() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for i in ids:
        assert len(i) == 32 and i == i.lower()
        u = uuid.UUID(hex=i)
        assert u.version == 4 and u.variant == uuid.RFC_4122
        assert u.hex == i
    # the random bits do vary (every hex digit but the version takes several values)
    for pos in range(32):
        seen = {i[pos] for i in ids}
        assert (len(seen) == 1) == (pos == 12), pos


@pytest.mark.parametrize("base", [
    DEFAULT_POLICY,
    Policy(subscriber="+81901", protection=False, strength=Strength.HIGH, block_international=True,
           youth=True, on_block=OnBlock.DROP, allow=frozenset({"a.example"}),
           block=frozenset({"+1555"}), contacts=frozenset({"+81902"}), weights={"X_Y": 2.0},
           updated_at=12.5),
])
@pytest.mark.parametrize("subscriber", [None, "", "+819012345678", "user@example.jp"])
def test_for_subscriber_equals_replace(base: Policy, subscriber: str | None) -> None:
    got = base.for_subscriber(subscriber)
    want = replace(base, subscriber=subscriber)
    assert got == want
    for f in fields(Policy):
        assert getattr(got, f.name) is getattr(want, f.name) or f.name == "subscriber"
    assert got.version == want.version and got.is_default == want.is_default
    with pytest.raises(FrozenInstanceError):
        got.subscriber = "other"  # type: ignore[misc]


def test_new_id_pool_is_not_shared_with_a_forked_child() -> None:
    import os

    new_id()  # the pool now holds ids
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids must not be the parent's
        os.close(r)
        os.write(w, "".join(new_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read().decode()
    os.waitpid(pid, 0)
    child = {data[i:i + 32] for i in range(0, len(data), 32)}
    parent = {new_id() for _ in range(50)}
    assert len(child) == 50 and not child & parent
