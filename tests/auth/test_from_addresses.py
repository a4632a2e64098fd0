"""`from_addresses` finds the addresses `email.utils.getaddresses` finds, with or without its
shortcut for one From value of the usual shape."""

from __future__ import annotations

from email.utils import getaddresses

from hypothesis import given
from hypothesis import strategies as st

from gateway.checks.auth.dmarc import _SIMPLE_FROM_RE, from_addresses

_PIECES = ["a", "Z", "0", "_", "+", "-", ".", "@", " ", "  ", "<", ">", '"', "\\", ",", ";", ":",
           "(", ")", "[", "]", "\t", "\u00e9", "john", "x.com", "doe@x.com", "<j@x.com>", '"A B"']


@given(st.lists(st.sampled_from(_PIECES), max_size=20))
def test_as_getaddresses(pieces: list[str]) -> None:
    value = "".join(pieces)
    assert from_addresses([value]) == [a for _n, a in getaddresses([value])]


@given(st.sampled_from(["", "John Doe ", '"Doe, John" ', '"" ', "J0 ", '"a<b@c>" ']),
       st.sampled_from(["j", "john.doe", "a+b_c-d", "x.y.z"]),
       st.sampled_from(["x.com", "mail.example.co.uk", "a-b.jp", "localhost"]),
       st.booleans(), st.sampled_from(["", " ", "  "]))
def test_usual_shapes_take_the_shortcut(name: str, local: str, domain: str, angle: bool,
                                        pad: str) -> None:
    addr = f"{local}@{domain}"
    value = pad + (f"{name}<{addr}>" if angle or name else addr) + pad
    assert _SIMPLE_FROM_RE.fullmatch(value) is not None
    assert from_addresses([value]) == [addr] == [a for _n, a in getaddresses([value])]


def test_several_values_as_getaddresses() -> None:
    values = ["a@x.com", "B <b@y.org>"]
    assert from_addresses(values) == [a for _n, a in getaddresses(values)] == ["a@x.com", "b@y.org"]
