"""SMS feature set s3: what it computes, that it never changes, and the batch entry point."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gateway.checks import classifier as C
from gateway.learn import features_sms as S
from gateway.learn import featuresets as FS
from gateway.learn.features import Features
from gateway.message import Channel, Message, ScanContext
from gateway.policy import DEFAULT_POLICY
from tests.digests import row_hash

DIGESTS = Path(__file__).parent / "data" / "s3_digests.json"


def _features(text: str, sender: str = "") -> Features:
    return Features.from_context(ScanContext(Message.sms(text, sender=sender), DEFAULT_POLICY))


def _meta(text: str, sender: str = "") -> list[str]:
    f = _features(text, sender)
    t0 = S._digits0(" ".join(text.lower().split()))
    return S.meta_tokens(f, text, t0, S._WORD_RE.findall(t0))


def test_s3_is_registered_as_the_sms_default() -> None:
    assert FS.DEFAULT_VERSION[Channel.SMS] == "s3" and FS.get("s3").row is S.row
    assert FS.DEFAULT_VERSION[Channel.EMAIL] == "e3"  # email has its own (features_email.py)


def test_sms_structure_tokens() -> None:
    spam = _meta("URGENT! You have WON a £1000 prize. txt CLAIM to 81010 now, 150p/msg "
                 "or call 09061701461", sender="81010")
    for tok in ("shortcode", "txt_to_code", "rate", "call_number", "phone", "money=3",
                "sender=short", "excl=1", "digrun=8", "capsw=3", "digits=7"):
        assert tok in spam, tok
    ham = _meta("ok see you at 7pm, bring the keys?", sender="+447700900123")
    assert "clock_time" in ham and "starts_lower" in ham and "quest=1" in ham
    assert "digits=1" in ham and "digits=0" in _meta("no digits here")
    assert not {"shortcode", "txt_to_code", "rate", "phone"} & set(ham)
    assert "sender=intl" in ham and "noalpha" in _meta("645")
    assert _meta("") == ["len=0", "empty"]
    ja = _meta("【重要】お客様のアカウントが停止されました https://a.top/x", sender="Info")
    assert "cjk=3" in ja and "tld=top" in ja and "sender=alpha" in ja


def test_row_blocks_are_normalised_and_deterministic() -> None:
    f = _features("Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005")
    idx, val = S.row(f)
    assert idx.dtype == np.int64 and idx.min() >= 0 and idx.max() < S.N_FEATURES
    assert idx.size == val.size
    # three blocks, each with weight / sqrt(occurrences) per occurrence
    weights = sorted(set(np.round(val, 12)))
    assert len(weights) == 3
    for w in weights:
        n = int(np.sum(np.isclose(val, w)))
        assert any(math.isclose(w * math.sqrt(n), bw) for bw in S.BLOCK_WEIGHTS.values())
    # the column caches only save time: cleared, the same row comes out
    for cache in S._COLS.values():
        cache.clear()
    i2, v2 = S.row(f)
    assert np.array_equal(idx, i2) and np.array_equal(val, v2)


def test_nfkc_and_digits_share_features() -> None:
    a = set(S.row(_features("ＷＩＮ　１０００ now"))[0].tolist())  # noqa: RUF001
    b = set(S.row(_features("WIN 2345 now"))[0].tolist())
    assert len(a ^ b) <= 4 and len(a & b) >= 20  # only the capitals/script tokens differ
    for text in ("", "a", "!", "😀" * 3, "x" * 10_000, "\ud800 lone surrogate", "nul\x00"):
        idx, val = S.row(_features(text))
        assert idx.size == val.size and np.all(np.isfinite(val))


def digests(texts: list[str]) -> list[str]:
    out = []
    for t in texts:
        idx, val = S.row(_features(t, sender="+819012345678"))
        out.append(row_hash(idx, val).hexdigest()[:24])
    return out


FIXED = ["【重要】お客様のアカウントが停止されました。確認はこちら https://a1.top/x",
         "明日の打ち合わせは午前十時から第三会議室で行います。", "認証コードは123456です。",
         "ＷＩＮ　￥１０，０００！ call ０９０-１２３４-５６７８", "", "x", "😀 ok 👍"]  # noqa: RUF001


def _sample(shared_data: Path) -> list[str]:
    lines = (shared_data / "sms" / "uci_sms_spam_train.tsv").read_text("utf-8").splitlines()
    return [ln.split("\t", 1)[1] for ln in lines[::15]][:300] + FIXED


def test_s3_output_never_changes(shared_data: Path) -> None:
    """Models trained with s3 (sms-linear/1.2.0) depend on these rows bit for bit."""
    expected = json.loads(DIGESTS.read_text())
    texts = _sample(shared_data)
    got = digests(texts)
    moved = [t[:40] for t, a, b in zip(texts, got, expected, strict=True) if a != b]
    assert moved == []


@pytest.fixture()
def s3_check(tmp_path: Path) -> C.SmsClassifierCheck:
    from .conftest import make_model

    slot = C.ModelSlot(Channel.SMS, fixed=make_model(tmp_path / "sms-s3" / "1"))
    assert slot.model is not None and slot.model.features.version == "s3"
    return C.SmsClassifierCheck(Channel.SMS, slot)


def test_batch_entry_point_matches_one_at_a_time(s3_check: C.SmsClassifierCheck) -> None:
    texts = ["WIN a free prize now! call 0906123 to claim", "see you at lunch", "ok",
             "Congratulations! you won 500 pounds, txt CLAIM to 81234", "明日10時に駅前で"]
    one = [ScanContext(Message.sms(t), DEFAULT_POLICY) for t in texts]
    many = [ScanContext(Message.sms(t), DEFAULT_POLICY) for t in texts]
    singles = [s3_check.run(c) for c in one]
    p = s3_check.prescore(many)
    assert p.shape == (len(texts),)
    assert np.allclose(p, [c.data["classifier.p"] for c in one], atol=1e-12)
    batched = [s3_check.run(c) for c in many]  # uses the batch's scores
    again = s3_check.run_many([ScanContext(Message.sms(t), DEFAULT_POLICY) for t in texts])
    for a, b, c in zip(singles, batched, again, strict=True):
        assert [s.name for s in a] == [s.name for s in b] == [s.name for s in c]
        assert np.allclose([s.factor for s in a], [s.factor for s in b], atol=1e-12)
        assert np.allclose([s.factor for s in a], [s.factor for s in c], atol=1e-12)
    assert any(singles)
    empty = [ScanContext(Message.sms(t), DEFAULT_POLICY) for t in ("", "  ")]
    assert s3_check.run_many(empty) == [[], []] == [s3_check.run(c) for c in empty]


def test_prescored_result_of_another_model_is_ignored(s3_check: C.SmsClassifierCheck) -> None:
    ctx = ScanContext(Message.sms("see you at lunch"), DEFAULT_POLICY)
    ctx.data[C.PRESCORED] = (object(), 0.123456)  # scored by a model since swapped out
    ref = ScanContext(Message.sms("see you at lunch"), DEFAULT_POLICY)
    s3_check.run(ctx)
    s3_check.run(ref)
    assert ctx.data["classifier.p"] == ref.data["classifier.p"] != 0.123456


if __name__ == "__main__":  # regenerate the digests (only when a NEW version is being made)
    import os

    texts = _sample(Path(os.environ["MAMORI_SHARED_DATA"]))
    DIGESTS.write_text(json.dumps(digests(texts), indent=0) + "\n")


def test_batch_scoring_is_the_estimators_own(s3_check: C.SmsClassifierCheck) -> None:
    """proba_rows (one gather, one segmented sum) equals scikit-learn's predict_proba, also
    with an empty row in the batch."""
    model = s3_check.slot.model
    assert model is not None and model.scorer is not None
    rows = [S.row(_features(t)) for t in ("WIN cash now! txt WIN to 80082", "ok", "明日10時")]
    rows.insert(1, (np.zeros(0, dtype=np.int64), np.zeros(0)))
    ref = model.estimator.predict_proba(model.features.stack(rows))[:, 1]
    assert np.allclose(model.proba_rows(rows), ref, atol=1e-12, rtol=0)
    assert model.proba_rows([]).shape == (0,)


def test_rows_concat_is_the_rows_end_to_end(shared_data: Path) -> None:
    """The batch featuriser gives, bit for bit, the rows of `row` laid end to end, for batches
    of every size (messages of 0-3 characters, whose n-grams would span two messages, too)."""
    import random

    fs = [_features(t) for t in [*_sample(shared_data), "", "a", "ab", "abc", "abcd", "x y"]]
    rnd = random.Random(7)
    batches = [fs, [], fs[:1], fs[-6:]] + [rnd.sample(fs, rnd.randrange(1, 20))
                                           for _ in range(50)]
    for batch in batches:
        rows = [S.row(f) for f in batch]
        idx, val, sizes = S.rows_concat(batch)
        assert sizes == [r[0].size for r in rows]
        assert idx.dtype == np.int64 and val.dtype == np.float64
        if rows:
            assert np.array_equal(idx, np.concatenate([r[0] for r in rows]))
            assert np.array_equal(val, np.concatenate([r[1] for r in rows]))
        else:
            assert idx.size == val.size == 0


def test_prescore_batch_keeps_each_row_and_the_same_probabilities(
        s3_check: C.SmsClassifierCheck) -> None:
    texts = ["WIN a free prize now! call 0906123 to claim", "", "ok", "明日10時に駅前で"]
    many = [ScanContext(Message.sms(t), DEFAULT_POLICY) for t in texts]
    p = s3_check.prescore(many)
    model = s3_check.slot.model
    assert model is not None
    rows = [S.row(_features(t)) for t in texts]
    assert p.tolist() == model.proba_rows(rows).tolist()  # the same arithmetic: bit for bit
    for c, (i, v) in zip(many, rows, strict=True):
        ci, cv = s3_check.features(c)  # the cached row, not computed again
        assert np.array_equal(ci, i) and np.array_equal(cv, v)


def test_rows_many_is_the_same_for_every_batch_size() -> None:
    """Small batches take `row` per message, larger ones `rows_concat`: the same numbers."""
    fs = [_features(t) for t in ("WIN cash now! txt WIN to 80082", "", "ok", "明日10時", "a b")]
    s3 = FS.get("s3")
    for k in range(len(fs) + 1):
        idx, val, sizes = s3.rows_many(fs[:k])
        rows = [S.row(f) for f in fs[:k]]
        assert sizes == [r[0].size for r in rows]
        assert idx.tolist() == [c for r in rows for c in r[0].tolist()]
        assert val.tolist() == [v for r in rows for v in r[1].tolist()]
