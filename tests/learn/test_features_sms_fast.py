"""The shortcuts of the s3 featuriser give what the code they stand for gives."""

from __future__ import annotations

import itertools
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.learn import features as f2
from gateway.learn import features_sms as s3

_ODD = ["http://A.com", "https://x.Y.jp/p?q#f", "www.a.com", "WWW.A.COM:80/x", "http://a.com:80",
        "http://u@a.com/", "http://[::1]/", "http://a.com\\x", "HTTPS://BIT.LY/X", "http:/a.com",
        "www.a.com://x", "http://", "https://-/", "http://a_b.com/", "http://\uff41.com/",
        "http://k\u212a.com/", "http://a.com?", "www.", "hTtP://MiXeD.Com#", "http://a.com/\x00",
        "http://a.com\t/", " http://a.com"]


@pytest.mark.parametrize("url", _ODD)
def test_url_host_is_urlsplits(url: str) -> None:
    assert s3._url_host(url) == f2._host(url)


@given(st.sampled_from(["", "http://", "https://", "HTTP://", "Https://", "www.", "ftp://",
                        "http:/"]),
       st.text(alphabet="aA0.-_:/?#@[]\\%\u212a\u017f\uff41 \t\x00\u00e9", max_size=20))
def test_url_host_is_urlsplits_for_any_text(prefix: str, rest: str) -> None:
    assert s3._url_host(prefix + rest) == f2._host(prefix + rest)


@given(st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=6))
def test_bigram_columns_are_the_crc_of_the_pair(words: list[str]) -> None:
    seed, mask = s3._BLOCK_SEED["b"], s3._MASK
    for a, b in itertools.pairwise(words):
        whole = zlib.crc32(f"{a} {b}".encode("utf-8", "surrogatepass"), seed) & mask
        assert zlib.crc32(b.encode("utf-8", "surrogatepass"), s3._BIGRAM_HEAD(a)) & mask == whole


@given(st.text(alphabet=[chr(c) for c in range(128)], max_size=40))
def test_ascii_words_are_the_expressions(text: str) -> None:
    assert s3._words(text) == s3._WORD_RE.findall(text)


@given(st.text(max_size=30))
def test_any_words_are_the_expressions(text: str) -> None:
    assert s3._words(text) == s3._WORD_RE.findall(text)
