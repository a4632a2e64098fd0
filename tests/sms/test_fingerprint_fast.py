"""The ASCII fast path of the flood fingerprint gives the key of the general path."""

from __future__ import annotations

import hashlib
import random
import string
import unicodedata
from pathlib import Path

from gateway.sms.flood import _DIGITS, _NOISE, _URL, _host, text_fingerprint


def reference(text: str) -> str:
    """The fingerprint as it was before the fast path (NFKC, casefold, URLs, digits, noise)."""
    t = unicodedata.normalize("NFKC", text).casefold()
    t = _URL.sub(lambda m: " url:" + _host(m.group(0)) + " ", t)
    t = _DIGITS.sub("#", t)
    t = _NOISE.sub("", t)
    return hashlib.blake2b(t.encode("utf-8"), digest_size=12).hexdigest()


def test_random_ascii_texts() -> None:
    rnd = random.Random(7)
    for _ in range(20_000):
        s = "".join(rnd.choice(string.printable) for _ in range(rnd.randrange(0, 60)))
        if rnd.random() < 0.3:
            s += " HTTPS://Ex-ample.COM/a?b=1 " + s
        if rnd.random() < 0.2:
            s = "WWW.x.y/z_9 " + s
        assert text_fingerprint(s) == reference(s), repr(s)


def test_corpus_texts(shared_data: Path) -> None:
    lines = (shared_data / "sms" / "uci_sms_spam_train.tsv").read_text("utf-8").splitlines()
    texts = [ln.split("\t", 1)[-1] for ln in lines]
    assert any(not t.isascii() for t in texts) and any(t.isascii() for t in texts)
    for t in texts:
        assert text_fingerprint(t) == reference(t), t
