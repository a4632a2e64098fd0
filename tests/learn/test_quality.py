"""Quality floors on the shared corpora (slow: they train real models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.learn import metrics as M
from gateway.learn.datasets import dedup, load
from gateway.learn.train import featurise, fit

pytestmark = pytest.mark.slow


def test_sms_grouped_holdout_floor(shared_data: Path) -> None:
    """Train on 80% of the deduplicated UCI split (by template group), test on the rest."""
    recs, _ = dedup(load(shared_data / "sms" / "uci_sms_spam_train.tsv"))
    test_groups = {g for g in {r.group for r in recs} if int(g, 16) % 5 == 0}
    train = [r for r in recs if r.group not in test_groups]
    test = [r for r in recs if r.group in test_groups]
    est = fit(featurise(train, progress=False), np.array([r.label for r in train]), 1.0)
    y = np.array([r.label for r in test])
    p = est.predict_proba(featurise(test, progress=False))[:, 1]
    s = M.summary(y, p)
    assert s["auc"] >= 0.99
    assert s["recall_at_fpr"]["0.01"]["recall"] >= 0.93


def test_shipped_email_model_on_trec07p_sample(shared_data: Path) -> None:
    """The SpamAssassin-only model on a slice of trec07p_early: the cross-corpus floor."""
    from gateway.learn.evaluate import score
    from gateway.learn.registry import live_dir, load_model

    root = Path(__file__).resolve().parents[2] / "models"
    model = load_model(live_dir(root, "email"))  # type: ignore[arg-type]
    recs = load(shared_data / "email" / "trec07p_early")[:1500]
    y = np.array([r.label for r in recs])
    p = score(model, recs, progress=False)
    assert M.summary(y, p)["auc"] >= 0.95
