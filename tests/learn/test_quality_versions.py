"""Shipped model versions, the synthetic Japanese generator and --threshold-source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import InputError
from gateway.learn import metrics as M
from gateway.learn import synth
from gateway.learn.datasets import masked
from gateway.learn.features import Features
from gateway.learn.registry import live_dir, load_model
from gateway.learn.train import train
from gateway.message import Channel
from tests.learn.conftest import tiny_records

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("model_dir", sorted(p.parent for p in MODELS.glob("*/*/metrics.json")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_version_loads_and_scores(model_dir: Path) -> None:
    """Old versions (1.0.0) keep loading next to the new ones, each with its own thresholds."""
    m = load_model(model_dir)
    assert m.scorer is not None  # the exact fast path was built and cross-checked
    p = m.proba([Features(m.channel, "WIN a FREE prize! txt CLAIM to 80082 now"),
                 Features(m.channel, "see you at lunch tomorrow")])
    assert p[0] > p[1]
    t = m.metrics["thresholds"]
    assert t["tag"] <= t["quarantine"] <= t["reject"]


def test_live_pointers() -> None:
    """sms: 1.2.0 (features s3) is live, rollback returns to 1.1.0 (features f2); email: 1.0.0
    stays live (1.1.0, selected on SpamAssassin alone, transfers worse to trec07p: see
    docs/models.md)."""
    sms = live_dir(MODELS, "sms")
    assert sms is not None and sms.name == "1.2.0" and load_model(sms).channel is Channel.SMS
    assert load_model(sms).features.version == "s3"
    assert (MODELS / "history-sms").read_text("utf-8").split()[-1] == "sms-linear/1.1.0"
    assert load_model(MODELS / "sms-linear" / "1.1.0").features.version == "f2"
    email = live_dir(MODELS, "email")
    assert email is not None and load_model(email).channel is Channel.EMAIL


def test_generator_is_deterministic_and_varied() -> None:
    a = synth.generate(400, seed=5)
    assert [r.text for r in a] == [r.text for r in synth.generate(400, seed=5)]
    legit = {r.text for r in a if r.label == 0}
    assert len(legit) > 150 and 0.3 < sum(r.label for r in a) / len(a) < 0.5
    assert all(r.meta["generator"] == synth.GENERATOR_VERSION for r in a)


def test_generator_holds_no_copy_of_the_evaluation_texts(shared_data: Path) -> None:
    """The quoted Japanese texts are for evaluation only: no template may reproduce one."""
    dev = {masked(json.loads(line)["text"])
           for line in (shared_data / "ja" / "ja_messages_dev.jsonl").read_text("utf-8").splitlines()
           if line.strip()}
    made = {masked(r.text) for r in synth.generate(3000)}
    assert not dev & made


def test_threshold_source_chooses_on_that_source(tmp_path: Path) -> None:
    recs = tiny_records(n=160)
    other = [r.__class__(r.channel, r.label, text=r.text + " extra", source="easy", order=r.order)
             for r in tiny_records(n=160, seed=9)]
    doc = train(Channel.SMS, recs + other, tmp_path / "m" / "1", cv_folds=4, progress=False,
                log=lambda s: None, threshold_source="generated")
    cv = doc["cv"]
    assert cv["threshold_source"] == "generated"
    assert doc["threshold"] == cv["threshold_at_target"] == cv["tiers"]["quarantine"]
    assert "only" in (tmp_path / "m" / "1" / "card.md").read_text("utf-8")
    with pytest.raises(InputError, match="threshold-source"):
        train(Channel.SMS, recs, tmp_path / "m" / "2", cv_folds=4, progress=False,
              log=lambda s: None, threshold_source="absent.tsv")


def test_threshold_at_fpr_counts_allowed_ham() -> None:
    y = np.array([0] * 1000 + [1] * 10)
    p = np.concatenate([np.linspace(0, 0.5, 1000), np.full(10, 0.9)])
    t = M.threshold_at_fpr(y, p, 0.001)
    assert M.at_threshold(y, p, t)["fp"] == 1


def test_without_cv_thresholds_come_from_out_of_fold_scores(tmp_path: Path) -> None:
    """--cv 0 (what perf/compare's held-out model uses): the tiers are still set on
    out-of-fold scores, not on the training messages' own (far lower for ham) scores."""
    import gateway.learn.train as T

    recs = tiny_records(n=200)
    doc = train(Channel.SMS, recs, tmp_path / "m" / "1", cv_folds=0, progress=False,
                log=lambda s: None)
    assert doc["cv"] == {} and "out-of-fold" in doc["thresholds_from"]
    X = T.featurise(T.dedup(recs)[0], progress=False)
    y = np.array([r.label for r in T.dedup(recs)[0]])
    groups = [r.group for r in T.dedup(recs)[0]]
    oof = T.cross_validate(X, y, groups, 1.0, k=T.THRESHOLD_FOLDS, progress=False).oof
    t = M.tiers(y, oof, block_fpr=0.001, tag_fpr=0.01)
    # (liblinear shuffles without a fixed seed: the same folds agree to a few 1e-5)
    assert doc["thresholds"]["tag"] == pytest.approx(t["tag"], rel=1e-3)
    assert doc["thresholds"]["quarantine"] == pytest.approx(t["quarantine"], rel=1e-3)


def test_email_tag_tier_is_tied_to_a_lower_ham_rate(tmp_path: Path) -> None:
    from gateway.learn.train import TAG_FPR

    assert TAG_FPR[Channel.EMAIL] < TAG_FPR[Channel.SMS] == 0.01
    y = np.array([0] * 1000 + [1] * 100)
    p = np.concatenate([np.linspace(0, 0.6, 1000), np.linspace(0.3, 1, 100)])
    t1 = M.tiers(y, p, tag_fpr=0.01)["tag"]
    t05 = M.tiers(y, p, tag_fpr=0.005)["tag"]
    assert t05 > t1 and (p[:1000] >= t05).sum() <= 5
