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


@given(st.sampled_from(["j", "john.doe", "a+b_c-d"]), st.sampled_from(["x.com", "a-b.co.uk"]),
       st.sampled_from(["", "Tim Peters", "P - D", "x.y", "a  b", "0"]),
       st.sampled_from(["", " ", "  "]), st.sampled_from(["", " ", "  "]))
def test_address_with_a_comment_takes_the_shortcut(local: str, domain: str, comment: str,
                                                   gap: str, pad: str) -> None:
    addr = f"{local}@{domain}"
    value = f"{pad}{addr}{gap}({comment}){pad}"
    assert _SIMPLE_FROM_RE.fullmatch(value) is not None
    assert from_addresses([value]) == [addr] == [a for _n, a in getaddresses([value])]


_COMMENTED = ["a@x.com", "j.d@b-c.org", " ", "(", ")", "x", "-", ".", "y z", "\\", '"', "<", ">",
              "@", ",", "(a)", "((", "\t"]


@given(st.lists(st.sampled_from(_COMMENTED), max_size=12))
def test_comments_as_getaddresses(pieces: list[str]) -> None:
    value = "".join(pieces)
    assert from_addresses([value]) == [a for _n, a in getaddresses([value])]


@given(st.sampled_from(["x.com", "X.Com.", "a..b", "." * 3, "x" * 70 + ".com", "b\u00fccher.de",
                        "\u00e9.", "xn--bcher-kva.de"]))
def test_from_domains_as_the_codec(domain: str) -> None:
    """An ASCII domain is kept as it is: the IDNA codec gives it back or raises (kept then)."""
    import contextlib

    from gateway.checks.auth.dmarc import from_domains

    dom = domain.rstrip(".").lower()
    if dom:
        with contextlib.suppress(UnicodeError):
            dom = dom.encode("idna").decode("ascii")
    assert from_domains([f"a@{domain}"]) == ([dom] if dom else [])


def test_long_values_as_getaddresses() -> None:
    """Long runs of spaces around the parts (the leading run is taken once: before, each split
    of it between the two space runs was tried, 0.2 s for 20,000 spaces)."""
    n = 5_000
    for value in [" " * n + "a@b.c" + " " * n + "(x)" + " " * n + "y", " " * n + "a@b.c" + " " * n,
                  "a" + " " * n + "b" + " " * n + "<a@b.c>", "a@b.c (" + " " * n + ")",
                  " " * n + "<a@b.c>"]:
        assert from_addresses([value]) == [a for _n, a in getaddresses([value])]
