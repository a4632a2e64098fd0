# ruff: noqa: RUF001  (full-width and look-alike characters are what these tests are about)
"""Canonicalisation (Safe Browsing test vectors) and host-suffix / path-prefix expressions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.urls.canon import (
    CanonicalUrl,
    UrlError,
    _canonicalize,
    canonicalize,
    expressions,
    list_expression,
)

# From the Safe Browsing v4 "URLs and Hashing" specification.
GSB_VECTORS = [
    ("http://host/%25%32%35", "http://host/%25"),
    ("http://host/%25%32%35%25%32%35", "http://host/%25%25"),
    ("http://host/%2525252525252525", "http://host/%25"),
    ("http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
    ("http://host/%%%25%32%35asd%%", "http://host/%25%25%25asd%25%25"),
    ("http://www.google.com/", "http://www.google.com/"),
    ("http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%63%6F%6D/",
     "http://168.188.99.26/.secure/www.ebay.com/"),
    ("http://3279880203/blah", "http://195.127.0.11/blah"),
    ("http://www.google.com/blah/..", "http://www.google.com/"),
    ("www.google.com/", "http://www.google.com/"),
    ("www.google.com", "http://www.google.com/"),
    ("http://www.evil.com/blah#frag", "http://www.evil.com/blah"),
    ("http://www.GOOgle.com/", "http://www.google.com/"),
    ("http://www.google.com.../", "http://www.google.com/"),
    ("http://www.google.com/foo\tbar\rbaz\n2", "http://www.google.com/foobarbaz2"),
    ("http://www.google.com/q?", "http://www.google.com/q?"),
    ("http://www.google.com/q?r?", "http://www.google.com/q?r?"),
    ("http://www.google.com/q?r?s", "http://www.google.com/q?r?s"),
    ("http://evil.com/foo#bar#baz", "http://evil.com/foo"),
    ("http://evil.com/foo;", "http://evil.com/foo;"),
    ("http://evil.com/foo?bar;", "http://evil.com/foo?bar;"),
    ("http://notrailingslash.com", "http://notrailingslash.com/"),
    ("http://www.gotaport.com:1234/", "http://www.gotaport.com:1234/"),
    ("  http://www.google.com/  ", "http://www.google.com/"),
    ("http:// leadingspace.com/", "http://leadingspace.com/"),
    ("http://%20leadingspace.com/", "http://leadingspace.com/"),
    ("%20leadingspace.com/", "http://leadingspace.com/"),
    ("https://www.securesite.com/", "https://www.securesite.com/"),
    ("http://host.com/ab%23cd", "http://host.com/ab%23cd"),
    ("http://host.com//twoslashes?more//slashes", "http://host.com/twoslashes?more//slashes"),
    ("http://0x4d.0x7d.0xd2.0xb8/", "http://77.125.210.184/"),
    ("http://0115.0175.0322.0270/", "http://77.125.210.184/"),
]


@pytest.mark.parametrize(("raw", "canonical"), GSB_VECTORS)
def test_safe_browsing_vectors(raw: str, canonical: str) -> None:
    assert canonicalize(raw).url == canonical


def test_idn_host_becomes_punycode() -> None:
    assert canonicalize("http://bücher.example/").host == "xn--bcher-kva.example"
    assert canonicalize("http://ＡＭＡＺＯＮ.example/").host == "amazon.example"


def test_userinfo_and_default_ports_dropped() -> None:
    c = canonicalize("https://user:pw@www.example.com:443/a")
    assert c.url == "https://www.example.com/a"


@pytest.mark.parametrize("bad", ["http://", "http://exa mple\x01.com/", "http://a.com:99999/"])
def test_bad_urls_raise(bad: str) -> None:
    with pytest.raises(UrlError):
        canonicalize(bad)


def test_expressions_cover_host_suffixes_and_path_prefixes() -> None:
    ex = expressions(canonicalize("http://a.b.evil.example/login/x?y"))
    assert "evil.example/login" in ex
    assert "evil.example/" in ex
    assert "a.b.evil.example/login/x?y" in ex
    assert "example/" not in ex  # the TLD alone is never an expression


def test_expression_limits_follow_safe_browsing() -> None:
    ex = expressions(canonicalize("http://a.b.c.d.e.f.g/1.html"))
    hosts = {e.split("/", 1)[0] for e in ex}
    assert hosts == {"a.b.c.d.e.f.g", "c.d.e.f.g", "d.e.f.g", "e.f.g", "f.g"}


def test_ip_host_has_no_suffixes() -> None:
    ex = expressions(canonicalize("http://1.2.3.4/a/b"))
    assert {e.split("/", 1)[0] for e in ex} == {"1.2.3.4"}


def test_listed_path_matches_deeper_urls_with_or_without_trailing_slash() -> None:
    for entry in ("evil.example/login", "http://evil.example/login/", "EVIL.example/login#x"):
        expr = list_expression(entry)
        assert expr == "evil.example/login"
        assert expr in expressions(canonicalize("https://a.b.evil.example/login/x?y"))
    assert list_expression("evil.example/login") not in expressions(
        canonicalize("http://evil.example/loginx"))


_URL_PIECES = ["http://", "HTTPS://", "hTTp://", "ftp://", "http:///", "a", "Z", "0", "9", "x", "-",
               "_", ".", "..", "com", "0x1f", "017", "/", "//", "/.", "/..", "?", "??", "#", "%",
               "%2e", "@", ":", ":80", "\\", " ", "\t", "~", "!", "'", "=", "&", "\u00e9", "xn--"]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(_URL_PIECES), max_size=14))
def test_plain_urls_as_the_general_rules(pieces: list[str]) -> None:
    """`canonicalize`'s shortcut for plain URLs gives what the step-by-step rules give."""
    url = "".join(pieces)

    def outcome(f: Callable[[], CanonicalUrl]) -> object:
        try:
            return f()
        except UrlError as exc:
            return type(exc)

    assert outcome(lambda: canonicalize(url)) == outcome(lambda: _canonicalize(url, "http"))


def test_plain_url_shortcut_examples() -> None:
    for url in ("http://www.example.com/a/b.html?x=1&y=2", "HTTPS://a-b.example_x.co", "http://a.b?",
                "http://a.b/?q?r", "http://1.2.3.x/", "http://a.b/p@q:r"):
        assert canonicalize(url) == _canonicalize(url, "http")
    assert canonicalize("http://0x7f.1/").is_ip  # (not the shortcut: an address)
