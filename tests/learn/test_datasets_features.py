"""Loaders (every format from its path), dedup and grouping, features, metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.errors import InputError
from gateway.learn import datasets as D
from gateway.learn import features as F
from gateway.learn import metrics as M
from gateway.message import Channel

EMAIL = b"From: a@example.com\r\nSubject: hello\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nhi there\r\n"


def test_formats_from_path(tmp_path: Path) -> None:
    tsv = tmp_path / "sms.tsv"
    tsv.write_text("ham\thello there\nspam\tWIN now\n\n", "utf-8")
    assert [(r.label, r.text) for r in D.load(tsv)] == [(0, "hello there"), (1, "WIN now")]
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "data").mkdir()
    (tmp_path / "mail" / "data" / "inmail.1").write_bytes(EMAIL)
    (tmp_path / "mail" / "data" / "inmail.2").write_bytes(EMAIL.replace(b"hi", b"buy"))
    (tmp_path / "mail" / "index").write_text("ham data/inmail.1\nspam data/inmail.2\n")
    trec = D.load(tmp_path / "mail")
    assert [r.label for r in trec] == [0, 1] and trec[1].order == 2 and trec[0].raw == EMAIL
    folder = tmp_path / "sa"
    folder.mkdir()
    (folder / "a.eml").write_bytes(EMAIL)
    (folder / "labels.csv").write_text("path,group,label\na.eml,easy,ham\n")
    assert D.load(folder)[0].channel is Channel.EMAIL
    js = tmp_path / "fb.jsonl"
    js.write_text('{"text": "詐欺です", "label": "fraud", "category": "x"}\n'
                  '{"text": "hi", "feedback": "not_spam"}\n', "utf-8")
    recs = D.load(js)
    assert [r.label for r in recs] == [1, 0] and recs[0].meta["category"] == "x"
    assert len(D.load("synthetic:ja:50")) == 50


@pytest.mark.parametrize("content", ["ham hello\n", '{"text": "x", "label": "maybe"}\n'])
def test_bad_input_is_a_clear_error(tmp_path: Path, content: str) -> None:
    p = tmp_path / ("bad.tsv" if "\t" not in content and "{" not in content else "bad.jsonl")
    p.write_text(content)
    with pytest.raises(InputError):
        D.load(p)
    with pytest.raises(InputError):
        D.load(tmp_path / "nope.tsv")


def test_dedup_and_template_groups() -> None:
    recs = [D.Record(Channel.SMS, 1, text=f"Your parcel {n} is waiting, pay the fee at http://x{n}.top now please")
            for n in range(5)]
    recs.append(D.Record(Channel.SMS, 0, text="see you at 7 tonight at the usual place ok"))
    kept, stats = D.dedup(recs)
    assert stats["duplicates"] == 4 and len(kept) == 2
    variants = [D.Record(Channel.SMS, 1, text=f"Your parcel is waiting at the depot, pay the small fee today {w}")
                for w in ("Alice", "Bob")]
    k2, _ = D.dedup(variants)
    assert len(k2) == 2 and k2[0].group == k2[1].group  # variants stay in one group


def test_features_deterministic_and_japanese() -> None:
    f = F.Features(Channel.SMS, "【国税庁】未払い税金のお支払い https://a.duckdns.org", sender="NTA")
    i1, v1 = F.row(f)
    i2, v2 = F.row(f)
    assert np.array_equal(i1, i2) and np.allclose(v1, v2)
    assert i1.max() < F.N_FEATURES and i1.min() >= 0
    toks = F.meta_tokens(f)
    assert toks["m:url"] == 1 and toks["m:tld=org"] == 1 and toks["m:sender=alpha"] == 1
    # full-width and half-width forms share their word and character features after NFKC
    # (only the script-mix structure token differs)
    a = set(F.row(F.Features(Channel.SMS, "ＷＩＮ　１０００"))[0])  # noqa: RUF001
    b = set(F.row(F.Features(Channel.SMS, "WIN 1000"))[0])
    assert len(a ^ b) <= 2 and len(a & b) >= 10
    X = F.vectorise([f, F.Features(Channel.SMS, "")])
    assert X.shape == (2, F.N_FEATURES)


def test_threshold_at_fpr() -> None:
    y = np.array([0] * 1000 + [1] * 10)
    p = np.concatenate([np.linspace(0, 0.5, 1000), np.full(10, 0.9)])
    t = M.threshold_at_fpr(y, p, 0.001)
    a = M.at_threshold(y, p, t)
    assert a["fp"] <= 1 and a["recall"] == 1.0
    lo, hi = M.wilson(5, 100)
    assert lo < 0.05 < hi
