"""Model cards: a Markdown rendering of a model's metrics.json for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pct(x: float) -> str:
    return f"{x:.2%}"


def render_card(doc: dict[str, Any]) -> str:
    lines = [
        f"# Model card: {doc['name']} {doc['version']}",
        "",
        f"- Channel: {doc['channel']}",
        f"- Created: {doc['created']} from code {doc['code_version']}, features "
        f"`{doc['features_version']}` ({doc['n_features']} hashed columns)",
        f"- Estimator: {doc['estimator']} (scikit-learn built-ins only, persisted with skops)",
        f"- model.skops sha256: `{doc['sha256']}`",
        f"- Blocking threshold (calibrated probability): {doc['threshold']:.4f}, chosen for "
        f"<= {_pct(doc['target_fpr'])} ham flagged in cross-validation; action thresholds "
        f"{doc.get('thresholds')}",
        "",
        "## Training data",
        "",
        "| source | licence | spam | ham |",
        "|---|---|---|---|",
    ]
    for src, s in doc["sources"].items():
        lines.append(f"| {src} | {s['licence']} | {s['spam']} | {s['ham']} |")
    d = doc["dedup"]
    lines += [
        "",
        f"{d['input']} records read, {d['duplicates']} near-duplicates dropped (URLs, numbers and "
        f"spacing masked), {d['label_conflicts']} label conflicts resolved by majority; "
        f"{d['groups']} template groups. Kept: {doc['counts']['spam']} spam, "
        f"{doc['counts']['ham']} ham.",
    ]
    notes = doc.get("notes")
    if notes:
        lines += ["", *notes]
    cv = doc.get("cv") or {}
    if cv:
        a = cv["at_threshold"]
        lines += [
            "",
            f"## Cross-validation ({cv['folds']}-fold, stratified, grouped by template)",
            "",
            "Out-of-fold calibrated probabilities, 95% confidence intervals (F1: bootstrap; "
            "rates: Wilson)."
            + (f" Thresholds and the figures below: messages of `{cv['threshold_source']}` only "
               "(the other sources are scored in the same folds)." if cv.get("threshold_source")
               else ""),
            "",
            "| metric | value | 95% CI |",
            "|---|---|---|",
            f"| ROC AUC | {cv['auc']:.4f} | |",
            f"| spam F1 at threshold {a['threshold']:.4f} | {a['f1']:.4f} | "
            f"{cv['f1_ci'][0]:.4f} - {cv['f1_ci'][1]:.4f} |",
            f"| spam recall | {a['recall']:.4f} | {cv['recall_ci'][0]:.4f} - "
            f"{cv['recall_ci'][1]:.4f} |",
            f"| ham blocked | {a['fp']} of {a['fp'] + a['tn']} ({_pct(a['fpr'])}) | "
            f"{_pct(cv['fpr_ci'][0])} - {_pct(cv['fpr_ci'][1])} |",
        ]
        for f, r in cv["recall_at_fpr"].items():
            lines.append(f"| recall at {_pct(float(f))} ham flagged | {r['recall']:.4f} | "
                         f"{r['recall_ci'][0]:.4f} - {r['recall_ci'][1]:.4f} |")
        pf = cv.get("per_fold")
        if pf:
            lines += [
                "",
                "Per fold at that threshold: "
                f"F1 {pf['f1_mean']:.4f} +- {pf['f1_std']:.4f} per fold, pooled F1 "
                f"{pf['f1_pooled']:.4f}, {pf['ham_blocked']} ham blocked in total "
                f"({_pct(pf['fpr_mean'])} mean, {_pct(pf['fpr_max'])} worst fold).",
            ]
    t = cv.get("tiers")
    if t:
        lines += ["", _tiers_md(t, "cross-validation")]
    for src, d in (cv.get("by_source") or {}).items():
        a = d["at_threshold"]
        lines += ["", f"Out-of-fold on **{src}** only: AUC {d['auc']:.4f}; at the quarantine "
                  f"threshold spam F1 {a['f1']:.4f} ({d['f1_ci'][0]:.4f} - {d['f1_ci'][1]:.4f}),"
                  f" recall {a['recall']:.4f}, {a['fp']} of {a['fp'] + a['tn']} ham blocked "
                  f"({_pct(a['fpr'])}, 95% CI up to {_pct(d['fpr_ci'][1])}). "
                  + _tiers_md(d["tiers"], src)]
    h = doc.get("holdout")
    if h:
        a = h["at_threshold"]
        lines += ["", f"## Temporal hold-out (latest {h['fraction']:.0%} of the messages)", "",
                  f"Trained on the earlier messages only. AUC {h['auc']:.4f}; at the threshold "
                  f"{a['threshold']:.4f}: recall {a['recall']:.4f} "
                  f"({h['recall_ci'][0]:.4f} - {h['recall_ci'][1]:.4f}), {a['fp']} ham flagged "
                  f"({_pct(a['fpr'])})."]
        for f, r in h["recall_at_fpr"].items():
            lines.append(f"- recall at {_pct(float(f))} ham flagged: {r['recall']:.4f} "
                         f"({r['recall_ci'][0]:.4f} - {r['recall_ci'][1]:.4f})")
    extra = doc.get("evaluations") or {}
    if extra:
        lines += ["", "## Further evaluations", ""]
        for title, text in extra.items():
            lines += [f"### {title}", "", text, ""]
    lines += [
        "",
        "## Use and limits",
        "",
        "Scores messages for the mamori classifier check; a calibrated probability is mapped to "
        "a symbol factor (see docs/models.md). Trained on the sources above only: mail or SMS "
        "unlike them (other languages, new fraud templates) is scored less reliably; retrain "
        "with `mamori model train` and compare before promoting.",
        "",
    ]
    return "\n".join(lines)


def _tiers_md(t: dict[str, Any], where: str) -> str:
    return (f"Action tiers ({where}): tag at p >= {t['tag']:.4f} detects spam with F1 "
            f"{t['detected_f1']:.4f} ({t['detected_f1_ci'][0]:.4f} - {t['detected_f1_ci'][1]:.4f}),"
            f" recall {t['detected_recall']:.4f}, {t['ham_tagged']} ham tagged (delivered with a "
            f"label); quarantine at p >= {t['quarantine']:.4f} blocks {t['ham_blocked']} ham "
            f"({_pct(t['ham_blocked_rate'])}, 95% CI up to {_pct(t['ham_blocked_ci'][1])}) and "
            f"{t['spam_blocked_recall']:.2%} of spam; reject at p >= {t['reject']:.4f} rejects "
            f"{t['spam_rejected_recall']:.2%} of spam and {t['ham_rejected']} ham.")


def write_card(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(render_card(doc), "utf-8")
