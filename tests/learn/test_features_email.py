"""Email feature version e3 (gateway/learn/features_email.py): its tokens, its row, its
registration next to f2, and that its output stays fixed (data/feature_digests_e3.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gateway.learn import features_email as E
from gateway.learn import featuresets
from gateway.learn.features import Features
from gateway.message import Channel, Message, ScanContext
from gateway.policy import DEFAULT_POLICY
from tests.digests import moved, row_hash

from .feature_digest import sample_paths

DIGESTS = Path(__file__).parent / "data" / "feature_digests_e3.json"

SPAMMY = (
    b"Received: from mx.example.org (mx.example.org [192.0.2.1]) by mail.example.org with ESMTP\r\n"
    b"Received: from abc123 (dsl-198-51-100-7.pool.example.net [198.51.100.7]) by mx.example.org"
    b" with SMTP\r\n"
    b"From: WINNER NOTICE <lucky4823911@gmail.com>\r\n"
    b"Reply-To: claims@payout.example.top\r\n"
    b"To: undisclosed-recipients:;\r\n"
    b"Subject: YOU WON $1,000,000!!!          qzx81\r\n"
    b"Date: 26 Nov 2026 10:00:00 +9900\r\n"
    b"Message-ID: <12345@localhost>\r\n"
    b"X-Mailer: Microsoft Outlook Express 6.00\r\n"
    b"Content-Type: text/html; charset=\"windows-1252\"\r\n\r\n"
    b"<html><body><a href=\"http://203.0.113.9:8080/claim?redirect=http://x\">"
    b"https://www.yourbank.com/login</a><font color=\"#ffffff\">ham words here</font>"
    b"<img src=\"http://203.0.113.9/a.gif\">CLAIM YOUR PRIZE NOW!!! Call 555-123-4567</body></html>\r\n"
)
REPLY = (
    b"Received: from laptop.example.org (laptop.example.org [192.0.2.10]) by mail.example.org"
    b" with ESMTPSA\r\n"
    b"From: Alice Example <alice@example.org>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Re: minutes of the meeting\r\n"
    b"Date: Thu, 26 Nov 2026 10:00:00 +0100\r\n"
    b"Message-ID: <20261126090000.GA1234@laptop.example.org>\r\n"
    b"User-Agent: Mutt/2.2\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    b"Thanks, looks right to me.\r\n\r\n> the minutes\r\n> are attached\r\n> see you\r\n"
)


def features(raw: bytes) -> Features:
    return Features.from_context(ScanContext(Message.email(raw), DEFAULT_POLICY))


def test_spammy_message_shows_its_anomalies() -> None:
    toks = E.meta_tokens(features(SPAMMY))
    for t in ("m:rcvd_first_dynamic", "m:rcvd_first_helo_bare", "m:from_freemail",
              "m:from_display_caps", "m:from_local_digits", "m:replyto_other_domain",
              "m:to_undisclosed", "m:date_no_weekday",
              "m:date_tz_invalid", "m:mid_shape=digits", "m:mid_dom_bare", "m:mailer=oe",
              "m:html_only", "m:mime_no_version", "m:charset=windows", "m:html_hidden_text",
              "m:url_ip", "m:url_port", "m:url_redirect", "m:href_text_mismatch",
              "m:subj_money", "m:subj_punct_run", "m:subj_trailing_id", "m:body_phone"):
        assert t in toks, t


def test_plain_reply_looks_like_a_reply() -> None:
    toks = E.meta_tokens(features(REPLY))
    assert {"m:mailer=client", "m:subj_reply", "m:ctype=text/plain", "m:charset=ascii",
            "m:nurl=0"} <= set(toks)
    assert "m:body_quoted=1" in toks
    assert not any(t.startswith(("m:rcvd_first_dynamic", "m:html", "m:url_ip", "m:from_free",
                                 "m:date_odd", "m:mid_other")) for t in toks)
    # no token names a host or a header field by its mere presence
    assert not any(t.startswith("m:") and ("example" in t or t.startswith(("m:has_", "m:no_")))
                   for t in toks)


def test_row_is_finite_and_in_range() -> None:
    for raw in (SPAMMY, REPLY, b"Subject: \r\n\r\n", b"\r\n"):
        idx, val = E.row(features(raw))
        assert idx.dtype == np.int64 and idx.size == val.size > 0
        assert idx.min() >= 0 and idx.max() < E.N_FEATURES
        assert np.isfinite(val).all()


def test_header_grams_leave_relay_fields_out() -> None:
    a = features(REPLY)
    relay = ("Received", "from pc.other.example.net (pc.other.example.net [192.0.2.99]) by "
             "relay.example.com with ESMTPSA")
    moved = Features(a.channel, a.text, a.sender, (relay, *a.headers[1:]), a.html, a.urls,
                     a.subject)
    ia, va = E.row(a)
    ib, vb = E.row(moved)
    assert np.array_equal(np.sort(ia), np.sort(ib))  # a relay's name changes nothing
    assert np.allclose(np.sort(va), np.sort(vb))


def test_e3_is_the_email_default_and_f2_stays() -> None:
    assert featuresets.DEFAULT_VERSION[Channel.EMAIL] == "e3"
    assert featuresets.default_for(Channel.EMAIL).row is E.row
    assert featuresets.get("f2").version == "f2"
    assert featuresets.DEFAULT_VERSION[Channel.SMS] == "s3"


def _digests(corpus: Path) -> dict[str, str]:
    out = {}
    for path in sample_paths(corpus):
        idx, val = E.row(features(path.read_bytes()))
        out[str(path.relative_to(corpus))] = row_hash(idx, val).hexdigest()[:32]
    return out


def test_e3_output_is_unchanged(shared_data: Path) -> None:
    """Models trained with e3 are scored with this code: its output must never move."""
    if not DIGESTS.is_file():
        pytest.fail(f"{DIGESTS} missing: python -m tests.learn.test_features_email > it")
    expected = json.loads(DIGESTS.read_text())
    got = _digests(shared_data / "email" / "spamassassin")
    assert len(got) == len(expected) == 300
    assert moved(expected, got) == []


if __name__ == "__main__":
    import os
    import sys

    base = Path(os.environ["MAMORI_SHARED_DATA"]) / "email" / "spamassassin"
    sys.stdout.write(json.dumps(_digests(base), indent=0, sort_keys=True) + "\n")


def test_html_only_mail_is_featurised_from_its_html() -> None:
    """ScanContext.text of HTML-only mail is the subject alone; e3 reads the HTML's text."""
    f = features(SPAMMY)
    assert "CLAIM" not in f.text  # the gap e3 fills (f2 reads only the subject here)
    body = E.body_text(f)
    assert "CLAIM YOUR PRIZE NOW" in body and body.startswith(f.text)
    assert E.body_text(features(REPLY)) is features(REPLY).text or \
        E.body_text(features(REPLY)) == features(REPLY).text
    toks = E.meta_tokens(f)
    assert "m:body_phone" in toks and "m:body_caps=3" in toks


def test_money_and_phone_fast_paths_agree_with_the_regexes() -> None:
    from gateway.learn.features import _MONEY_RE, _PHONE_RE

    for s in ("", "costs 5 dollars", "10 POUNDS", "5000円です", "￥500", "$5", "no money here",
              "call +44 20 7946 0958", "call 12-34", "1 2 3 4 5 6 7 8 9", "usd", "5usd"):
        assert E._has_money(s) == (any(c in s for c in "$£€¥") or bool(_MONEY_RE.search(s)))
        assert bool(E._PHONE_ANY_RE.search(s)) == bool(_PHONE_RE.search(s))


def test_email_training_defaults_to_e3(tmp_path: Path) -> None:
    from gateway.learn.datasets import Record
    from gateway.learn.registry import load_model
    from gateway.learn.train import train

    def word(i: int) -> bytes:  # dedup masks digits: vary the words instead
        return " ".join(chr(97 + (i * j + j) % 26) * 3 for j in range(1, 6)).encode()

    recs = [Record(Channel.EMAIL, i % 2, raw=(SPAMMY if i % 2 else REPLY).replace(
        b"qzx81", word(i)).replace(b"minutes", b"minutes " + word(i)).replace(
        b"CLAIM YOUR", word(i) + b" CLAIM YOUR").replace(b"Thanks,", word(i) + b" thanks,"),
        source="t", order=i) for i in range(40)]
    doc = train(Channel.EMAIL, recs, tmp_path / "email-t" / "1", cv_folds=0, progress=False,
                log=lambda s: None)
    assert doc["features_version"] == "e3" and doc["tag_fpr"] == 0.005
    m = load_model(tmp_path / "email-t" / "1")
    assert m.features.version == "e3"
    p = m.proba([features(SPAMMY), features(REPLY)])
    assert p[0] > p[1]


def test_mail_store_and_list_fields_change_nothing() -> None:
    """X-Keywords, Delivery-Date, Delivered-To, List-*: where a corpus was kept, not the mail."""
    a = features(REPLY)
    extra = (("X-Keywords", "NonJunk"), ("Delivery-Date", "Thu, 26 Nov 2026 10:00:05 +0000"),
             ("Delivered-To", "bob@example.org"), ("List-Id", "<dev.lists.example.org>"))
    b = Features(a.channel, a.text, a.sender, (*a.headers, *extra), a.html, a.urls, a.subject)
    ia, va = E.row(a)
    ib, vb = E.row(b)
    assert np.array_equal(np.sort(ia), np.sort(ib)) and np.allclose(np.sort(va), np.sort(vb))
    c = Features(a.channel, a.text, a.sender, (*a.headers, ("X-Mailer", "BulkBlaster 9")),
                 a.html, a.urls, a.subject)
    assert not np.array_equal(np.sort(E.row(c)[0]), np.sort(ia))  # a sender-written field does


def test_letter_counts_match_the_str_methods() -> None:
    """`_letters` (C-level for ASCII) counts exactly what str.isalpha / str.isupper count."""
    import random
    import string

    from gateway.learn.features import _letters

    samples = [chr(c) for c in range(0x250)] + ["", "Straße ÄÖÜ 東京 Ǆǅǆ ǈ \udce9 x"]
    rnd = random.Random(7)
    pool = string.printable + "éÉßΣσ東ǅ\u00a0"
    samples += ["".join(rnd.choice(pool if i % 2 else string.printable) for _ in range(rnd.randrange(300)))
                for i in range(400)]
    for s in samples:
        assert _letters(s) == (sum(map(str.isalpha, s)), sum(map(str.isupper, s))), repr(s)


def test_column_counts_match_numpy_unique() -> None:
    import numpy as np

    from gateway.learn.features import N_FEATURES, _counts

    rng = np.random.default_rng(3)
    for size in (1, 2, 3, 50, 4000):
        for high in (2, 40, N_FEATURES):
            ids = rng.integers(0, high, size, dtype=np.uint64)
            cols, cnt = _counts(ids)
            want_cols, want_cnt = np.unique(ids, return_counts=True)
            assert cols.dtype == np.int64 and np.array_equal(cols, want_cols.astype(np.int64))
            assert np.array_equal(cnt, want_cnt)


def test_text_meta_prefilters_decide_as_the_regexes() -> None:
    """`_text_meta` skips _MONEY_RE / _BARE_DOMAIN_RE / _CJK_RE on ASCII text without the
    words they need: the tokens are those of the regexes alone."""
    import random
    import string
    from collections import Counter

    from gateway.learn import features as F

    rnd = random.Random(5)
    words = ["$", "5 pounds", "10usd", "3 Dollars", "POUND", "x.com", "a.ORG", "bb.info", "q.biz.",
             "ab.c", "1 usd", ".com", "foo.co.uk", "12 円", "U\u017fd", "東京", "7 \uff55\uff53\uff44"]
    for _ in range(3000):
        parts = [rnd.choice(words) if rnd.random() < 0.3 else
                 "".join(rnd.choice(string.ascii_letters + string.digits + " .-$") for _ in range(rnd.randrange(8)))
                 for _ in range(rnd.randrange(12))]
        text = " ".join(parts)
        got: Counter[str] = Counter()
        F._text_meta(text, got)
        sample = text[:5000]
        assert ("m:money" in got) == bool(F._MONEY_RE.search(sample)), text
        assert ("m:bare_domain" in got) == bool(F._BARE_DOMAIN_RE.search(sample)), text
        n_alpha = sum(map(str.isalpha, sample))
        if n_alpha:
            cjk = len(F._CJK_RE.findall(sample)) / n_alpha
            assert got[f"m:cjk={F._bucket(cjk, (0.0, 0.3, 0.7))}"] == 1, text


def test_normalise_collapses_exactly_the_regex_whitespace() -> None:
    """normalise joins str.split() runs: the same as re's \\s+ -> " ", strip, lower."""
    import random
    import re
    import sys
    import unicodedata

    from gateway.learn.features import normalise

    ws = re.compile(r"\s+")
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace() or ws.fullmatch(chr(c))]
    assert all(c.isspace() and ws.fullmatch(c) for c in spaces)
    rnd = random.Random(2)
    pool = [*spaces, *"abc XYZ\u3000\uff71\uff72\u6771", "\u200b", "\ufeff", "\x00"]
    for _ in range(5000):
        t = "".join(rnd.choice(pool) for _ in range(rnd.randrange(30)))
        assert normalise(t) == ws.sub(" ", unicodedata.normalize("NFKC", t)).strip().lower(), repr(t)


def test_zero_digits_matches_the_regex() -> None:
    from gateway.learn.features import _DIGITS_RE, _zero_digits

    for t in ["", "abc", "0123456789", "tel 03-1234-5678 x9", "\u0663\u0664 \uff11\uff12 7", "é1"]:
        assert _zero_digits(t) == _DIGITS_RE.sub("0", t)
    every = "".join(map(chr, range(0x3000)))
    assert _zero_digits(every) == _DIGITS_RE.sub("0", every)
    ascii_only = "".join(map(chr, range(128)))
    assert _zero_digits(ascii_only) == _DIGITS_RE.sub("0", ascii_only)
