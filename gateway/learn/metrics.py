"""Detection metrics at target false-positive rates, with bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

FPR_TARGETS = (0.01, 0.001, 0.0001)


def threshold_at_fpr(y: np.ndarray, p: np.ndarray, fpr: float) -> float:
    """The lowest threshold whose ham false-positive rate (p >= t) is at most `fpr`."""
    ham = np.sort(np.asarray(p)[np.asarray(y) == 0])[::-1]
    if ham.size == 0:
        return 0.5
    allowed = int(np.floor(fpr * ham.size))  # hams we may flag
    if allowed >= ham.size:
        return float(ham[-1])
    # flag strictly above the (allowed)-th highest ham score
    return float(np.nextafter(ham[allowed], np.inf))


def at_threshold(y: np.ndarray, p: np.ndarray, t: float) -> dict[str, float]:
    y = np.asarray(y)
    pred = np.asarray(p) >= t
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"threshold": float(t), "tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": prec,
            "recall": rec, "f1": f1, "fpr": fp / (fp + tn) if fp + tn else 0.0}


def recall_at_fpr(y: np.ndarray, p: np.ndarray, fpr: float) -> float:
    return at_threshold(y, p, threshold_at_fpr(y, p, fpr))["recall"]


def bootstrap_ci(y: np.ndarray, p: np.ndarray, fn: Any, *, n: int = 500, seed: int = 11,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of fn(y, p) by resampling messages with replacement (stratified)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    p = np.asarray(p)
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    vals = []
    for _ in range(n):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        vals.append(fn(y[idx], p[idx]))
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    ph = k / n
    d = 1 + z * z / n
    centre = (ph + z * z / (2 * n)) / d
    half = z * np.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / d
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def summary(y: np.ndarray, p: np.ndarray, folds: Sequence[dict[str, float]] = (), *,
            target_fpr: float = 0.001, threshold: float | None = None) -> dict[str, Any]:
    """Metrics of scores p against labels y: AUC, recall at FP targets, F1 at the threshold
    (given, or chosen for target_fpr on these scores), with 95% confidence intervals."""
    y = np.asarray(y)
    p = np.asarray(p)
    chosen = threshold if threshold is not None else threshold_at_fpr(y, p, target_fpr)
    at = at_threshold(y, p, chosen)
    out: dict[str, Any] = {
        "n": int(y.size), "spam": int(y.sum()), "ham": int(y.size - y.sum()),
        "auc": float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else None,
        "threshold_at_target": float(chosen),
        "at_threshold": at,
        "f1_ci": bootstrap_ci(y, p, lambda a, b: at_threshold(a, b, chosen)["f1"]),
        "recall_ci": wilson(at["tp"], at["tp"] + at["fn"]),
        "fpr_ci": wilson(at["fp"], at["fp"] + at["tn"]),
        "recall_at_fpr": {},
    }
    for f in FPR_TARGETS:
        t = threshold_at_fpr(y, p, f)
        a = at_threshold(y, p, t)
        out["recall_at_fpr"][str(f)] = {
            "threshold": t, "recall": a["recall"], "fp": a["fp"], "f1": a["f1"],
            "recall_ci": wilson(a["tp"], a["tp"] + a["fn"]),
        }
    if folds:
        f1s = np.array([f["f1"] for f in folds])
        fprs = np.array([f["fpr"] for f in folds])
        recs = np.array([f["recall"] for f in folds])
        out["per_fold"] = {
            "f1_mean": float(f1s.mean()), "f1_std": float(f1s.std(ddof=1)) if f1s.size > 1 else 0.0,
            "recall_mean": float(recs.mean()), "fpr_mean": float(fprs.mean()),
            "fpr_max": float(fprs.max()),
            "ham_blocked": int(sum(f["fp"] for f in folds)),
            "spam_caught": int(sum(f["tp"] for f in folds)),
            "f1_pooled": _pooled_f1(folds),
        }
    return out


def tiers(y: np.ndarray, p: np.ndarray, *, block_fpr: float = 0.001, tag_fpr: float = 0.01,
          reject_fpr: float = 0.0001) -> dict[str, Any]:
    """The three action thresholds of a model, each tied to a ham false-positive rate, and
    what they do on scores p: tag (delivered with a label) at <= `tag_fpr` ham, quarantine
    (blocking) at <= `block_fpr`, reject at <= `reject_fpr`."""
    y = np.asarray(y)
    p = np.asarray(p)
    t_block = threshold_at_fpr(y, p, block_fpr)
    t_tag = min(threshold_at_fpr(y, p, tag_fpr), t_block)
    t_reject = max(threshold_at_fpr(y, p, reject_fpr), t_block)
    det = at_threshold(y, p, t_tag)
    blk = at_threshold(y, p, t_block)
    rej = at_threshold(y, p, t_reject)
    return {
        "tag": t_tag, "quarantine": t_block, "reject": t_reject,
        "detected_f1": det["f1"], "detected_recall": det["recall"],
        "detected_precision": det["precision"], "ham_tagged": det["fp"],
        "detected_f1_ci": bootstrap_ci(y, p, lambda a, b: at_threshold(a, b, t_tag)["f1"]),
        "ham_blocked": blk["fp"], "ham_blocked_rate": blk["fpr"],
        "ham_blocked_ci": wilson(blk["fp"], blk["fp"] + blk["tn"]),
        "spam_blocked_recall": blk["recall"], "blocked_f1": blk["f1"],
        "spam_rejected_recall": rej["recall"], "ham_rejected": rej["fp"],
    }


def describe_tiers(t: dict[str, Any]) -> str:
    return (f"tiers: tag p>={t['tag']:.4f} -> spam F1 {t['detected_f1']:.4f} "
            f"[{t['detected_f1_ci'][0]:.4f}, {t['detected_f1_ci'][1]:.4f}] (recall "
            f"{t['detected_recall']:.4f}, {t['ham_tagged']} ham tagged); quarantine p>="
            f"{t['quarantine']:.4f} -> {t['ham_blocked']} ham blocked ({t['ham_blocked_rate']:.3%},"
            f" CI up to {t['ham_blocked_ci'][1]:.3%}), spam blocked {t['spam_blocked_recall']:.4f};"
            f" reject p>={t['reject']:.4f} -> spam rejected {t['spam_rejected_recall']:.4f}, "
            f"{t['ham_rejected']} ham")


def _pooled_f1(folds: Sequence[dict[str, float]]) -> float:
    tp = sum(f["tp"] for f in folds)
    fp = sum(f["fp"] for f in folds)
    fn = sum(f["fn"] for f in folds)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def describe(s: dict[str, Any]) -> str:
    a = s["at_threshold"]
    lines = [
        f"n={s['n']} (spam {s['spam']}, ham {s['ham']}) AUC={s['auc']:.4f}" if s.get("auc")
        else f"n={s['n']}",
        f"at threshold {a['threshold']:.4f}: F1={a['f1']:.4f} [{s['f1_ci'][0]:.4f}, "
        f"{s['f1_ci'][1]:.4f}] recall={a['recall']:.4f} ham blocked={a['fp']}/{a['fp'] + a['tn']}"
        f" ({a['fpr']:.4%}, CI up to {s['fpr_ci'][1]:.4%})",
    ]
    for f, r in s["recall_at_fpr"].items():
        lines.append(f"recall at {float(f):.2%} FP: {r['recall']:.4f} (F1 {r['f1']:.4f}, "
                     f"{r['fp']} ham)")
    pf = s.get("per_fold")
    if pf:
        lines.append(f"per fold at that threshold: F1 {pf['f1_mean']:.4f}"
                     f" +- {pf['f1_std']:.4f}, pooled F1 {pf['f1_pooled']:.4f}, ham blocked "
                     f"{pf['ham_blocked']} in total ({pf['fpr_mean']:.4%} mean)")
    return "\n".join(lines)
