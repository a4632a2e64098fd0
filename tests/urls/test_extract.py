# ruff: noqa: RUF001  (full-width and look-alike characters are what these tests are about)
"""Extraction, over every evasion form fraudsters use."""

from __future__ import annotations

import pytest

from gateway.urls.extract import extract_urls


def urls(text: str, html: str = "") -> list[str]:
    return [f.url for f in extract_urls(text, html=html)]


def one(text: str) -> tuple[str, tuple[str, ...]]:
    found = extract_urls(text)
    assert len(found) == 1, found
    return found[0].url, found[0].evasions


def test_plain_url() -> None:
    assert one("Visit https://evil.example/login now.") == ("https://evil.example/login", ())


@pytest.mark.parametrize("text", [
    "go to amazon-security.top/verify please",
    "確認はこちら amazon-security.top/verify",
    "see www.amazon-security.top/verify)",
])
def test_missing_scheme(text: str) -> None:
    url, ev = one(text)
    assert "no-scheme" in ev or url.startswith("http://www.")
    assert url.endswith("amazon-security.top/verify")
    assert url.startswith("http://")


def test_full_width_characters() -> None:
    url, ev = one("ｈｔｔｐｓ：／／ａｍａｚｏｎ－ｊｐ．ｔｏｐ／ｌｏｇｉｎ")
    assert url == "https://amazon-jp.top/login"
    assert "fullwidth" in ev


def test_ideographic_full_stop_between_labels() -> None:
    url, ev = one("amazon。co。jp にログイン")
    assert url == "http://amazon.co.jp/"
    assert "fullwidth" in ev


@pytest.mark.parametrize("zw", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])
def test_zero_width_characters(zw: str) -> None:
    url, ev = one(f"https://ama{zw}zon-check{zw}.xyz/a")
    assert url == "https://amazon-check.xyz/a"
    assert "zero-width" in ev


@pytest.mark.parametrize(("text", "expected"), [
    ("hxxps://evil[.]example/path", "https://evil.example/path"),
    ("hxxp://evil(.)example/", "http://evil.example/"),
    ("evil[.]example", "http://evil.example/"),
    ("evil[dot]com/x", "http://evil.com/x"),
    ("hXXps[:]//evil{.}example/a", "https://evil.example/a"),
])
def test_defanged(text: str, expected: str) -> None:
    url, ev = one(text)
    assert url == expected
    assert "defanged" in ev


@pytest.mark.parametrize(("text", "expected"), [
    ("https://amaz\non-secure.top/login", "https://amazon-secure.top/login"),  # SMS split
    ("https://amazon-secure.\ntop/login", "https://amazon-secure.top/login"),
    ("https://evil.example/lo\n/gin/x", "https://evil.example/lo/gin/x"),
    ("https://evil .example/", "https://evil.example/"),
    ("https://evil.example /login", "https://evil.example/login"),
])
def test_line_breaks_and_spaces_inside(text: str, expected: str) -> None:
    url, ev = one(text)
    assert url == expected
    assert "split" in ev


def test_text_after_a_complete_url_is_not_joined() -> None:
    assert urls("https://evil.com/\nThanks for your order.") == ["https://evil.com/"]
    assert urls("https://evil.com\nThanks") == ["https://evil.com/"]


def test_idn_and_punycode() -> None:
    found = extract_urls("http://bücher.example/x and xn--bcher-kva.example")
    assert {f.host for f in found} == {"xn--bcher-kva.example"}
    assert all("idn" in f.evasions for f in found)


def test_percent_encoded_host_and_path() -> None:
    url, ev = one("http://%65vil.example/%2e%2e/a")
    assert url == "http://evil.example/a"
    assert "percent" in ev


def test_html_entities_in_text() -> None:
    url, ev = one("click http&#58;//evil&#46;example/x")
    assert url == "http://evil.example/x"
    assert "entity" in ev


def test_japanese_text_glued_to_url() -> None:
    assert urls("荷物をお届けできませんでした。http://sagawa-abc.com/こちら") == [
        "http://sagawa-abc.com/"]
    assert urls("詳細https://evil.comにて") == ["https://evil.com/"]


def test_html_href_vs_visible_text() -> None:
    html = ('<a href="http://evil.example/x">https://www.paypal.com/</a>'
            '<a href="https://www.paypal.com/a">www.paypal.com</a>'
            '<a href="https://paypal.com/b">https://www.paypal.com/b</a>'
            '<img src="http://img.example/a.png"><a href="mailto:x@y.z">mail</a>')
    found = {f.url: f for f in extract_urls("", html=html)}
    assert found["http://evil.example/x"].display_host == "www.paypal.com"
    assert found["https://www.paypal.com/a"].display_host == ""
    assert found["https://paypal.com/b"].display_host == ""  # same site, other subdomain
    assert "http://img.example/a.png" in found
    assert not any(u.startswith("mailto") for u in found)


def test_html_entity_encoded_href() -> None:
    html = '<a href="http&#x3a;//evil&#46;example/x">Click here</a>'
    assert urls("", html=html) == ["http://evil.example/x"]


@pytest.mark.parametrize("text", [
    "readme.txt and setup.py and e.g. this, i.e. that",
    "write to user@example.com",
    "Hello. How are you? I am fine. Version 1.2.3 ships today.",
    "",
    "お客様のアカウントに不正アクセスがありました。ご確認ください。",
])
def test_no_false_urls(text: str) -> None:
    assert urls(text) == []


def test_deduplicated_in_order_and_capped() -> None:
    text = " ".join(f"https://h{i}.example/" for i in range(600)) + " https://h0.example/"
    found = urls(text)
    assert found[0] == "https://h0.example/"
    assert len(found) == 500
    assert len(set(found)) == len(found)


def test_ip_and_port_urls() -> None:
    assert urls("http://1.2.3.4:8080/x") == ["http://1.2.3.4:8080/x"]
    assert urls("http://3279880203/blah") == ["http://195.127.0.11/blah"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", [
    "a." * 20000 + "1", "a-" * 20000 + ".x", "https://" + "a." * 20000, "www." * 20000,
    ".".join(["abcdefgh"] * 20000) + "!", "hxxp[.]" * 20000, " .a" * 20000, "&amp;" * 20000,
    "https://x.example/" + "%25" * 20000, "\u200b." * 20000, "ｗｗｗ．" * 20000,
])
def test_pathological_input_completes(text: str) -> None:
    found = extract_urls(text, html=f"<a href='{text[:5000]}'>{text[:5000]}</a>" * 3)
    assert len(found) <= 500


def test_scan_context_urls_uses_the_extractor() -> None:
    from gateway.message import Message, ScanContext
    from gateway.policy import DEFAULT_POLICY

    ctx = ScanContext(Message.sms("hxxps://evil[.]example/a and www.ok.example"), DEFAULT_POLICY)
    assert ctx.urls == ("https://evil.example/a", "http://www.ok.example/")
