"""The ASCII path of the sender-ID skeleton gives what the general one gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.sms import registry as R


def _general(sender: str) -> str:
    return R._SEPARATORS.sub("", R.normalise_sender_id(sender)).translate(R._FOLD)


@given(st.text(alphabet=[chr(c) for c in range(128)], max_size=24))
def test_ascii_skeleton_is_the_general_one(sender: str) -> None:
    assert R.skeleton(sender) == _general(sender)


@given(st.text(max_size=16))
def test_any_skeleton_is_the_general_one(sender: str) -> None:
    assert R.skeleton(sender) == _general(sender)


def test_examples() -> None:
    for s in ("PAYPA1", "Pay-Pal", "\uff30\uff41\uff59\uff30\uff41\uff4c", "+81 90-1234.5678",
              "My_Bank!", "\x1cA\x1fB ", "I$1@"):
        assert R.skeleton(s) == _general(s)
    assert R.skeleton("PAYPA1") == R.skeleton("Pay-Pal") == "paypal"
