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
        f"- Decision threshold (calibrated probability): {doc['threshold']:.4f}, chosen for "
        f"<= {_pct(doc['target_fpr'])} ham flagged in cross-validation",
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
            "rates: Wilson).",
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


def write_card(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(render_card(doc), "utf-8")
