"""Evaluation and comparison of models: metrics, an HTML report, PNG plots (matplotlib Agg)."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from tqdm import tqdm

from gateway.errors import InputError
from gateway.learn import metrics as M
from gateway.learn.datasets import Record, dedup, load_many
from gateway.learn.registry import LoadedModel, load_model
from gateway.learn.train import featurise, record_message
from gateway.message import Channel, Message

PLOTS = ("roc.png", "pr.png", "hist.png", "confusion.png")
BLOCKING = frozenset({"quarantine", "soft_reject", "reject"})


@dataclass
class EvalResult:
    model: str
    summary: dict[str, Any]
    text: str
    html: Path
    categories: list[dict[str, Any]]


def excerpt(rec: Record, n: int = 240) -> str:
    if rec.channel is Channel.EMAIL and rec.raw:
        msg = Message.email(rec.raw)
        subj = msg.header("Subject")
        body = msg.body[:4000].decode("utf-8", "replace")
        text = f"[{subj}] " + " ".join(body.split())
    else:
        text = " ".join(rec.text.split())
    return text[:n] + ("..." if len(text) > n else "")


def score(model: LoadedModel, records: Sequence[Record], *, progress: bool = True) -> np.ndarray:
    X = featurise(records, progress=progress, desc=f"scoring {model.ident}",
                  features=model.features)
    if model.scorer is not None:
        return model.scorer.proba(X)
    return np.asarray(model.estimator.predict_proba(X)[:, 1])


def pipeline_actions(model_dir: Path, records: Sequence[Record], *, progress: bool = True
                     ) -> list[str]:
    """The action of the whole pipeline (every registered check) for each record."""
    from gateway.config import load_settings
    from gateway.events import NullSink
    from gateway.plugins import PluginEnv
    from gateway.runtime import Gateway
    from gateway.store.policy import MemoryPolicyStore

    settings = load_settings()
    env = PluginEnv(settings)
    channel = records[0].channel.value if records else "sms"
    env.overrides[f"model.{channel}"] = Path(model_dir)
    gw = Gateway.create(settings, env=env, events=NullSink(), policies=MemoryPolicyStore())

    async def go() -> list[str]:
        await gw.start()
        out = []
        try:
            for r in tqdm(records, desc="pipeline", disable=not progress, leave=False):
                v = await gw.pipeline.scan(record_message(r))
                out.append(v.action.value)
        finally:
            await gw.close()
        return out

    return asyncio.run(go())


def _plots(y: np.ndarray, p: np.ndarray, t: float, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(np.maximum(fpr, 1e-5), tpr, lw=1.5)
    for f in M.FPR_TARGETS:
        ax.axvline(f, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_xlabel("ham flagged (false-positive rate, log)")
    ax.set_ylabel("spam caught (recall)")
    ax.set_title(f"ROC - {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=110)
    plt.close(fig)

    prec, rec, _ = precision_recall_curve(y, p)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(rec, prec, lw=1.5)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(max(0.0, float(prec.min()) - 0.02), 1.005)
    ax.set_title(f"Precision-recall - {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "pr.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    bins = np.linspace(0, 1, 41).tolist()
    ax.hist(p[y == 0], bins=bins, alpha=0.6, label="ham", color="tab:blue", log=True)
    ax.hist(p[y == 1], bins=bins, alpha=0.6, label="spam/fraud", color="tab:red", log=True)
    ax.axvline(t, color="black", ls="--", lw=1, label=f"threshold {t:.3f}")
    ax.set_xlabel("calibrated probability of spam")
    ax.set_ylabel("messages (log)")
    ax.legend(fontsize=8)
    ax.set_title(f"Scores per class - {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "hist.png", dpi=110)
    plt.close(fig)

    a = M.at_threshold(y, p, t)
    cm = np.array([[a["tn"], a["fp"]], [a["fn"], a["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks([0, 1], ["pass", "flagged"])
    ax.set_yticks([0, 1], ["ham", "spam"])
    ax.set_title(f"Confusion at {t:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)


def category_table(records: Sequence[Record], p: np.ndarray, t: float,
                   actions: Sequence[str] | None) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(records):
        cat = str(r.meta.get("category") or ("spam" if r.label else "ham"))
        row = rows.setdefault(cat, {"category": cat, "label": "fraud" if r.label else "legit",
                                    "n": 0, "classifier": 0, "pipeline": 0, "pipeline_blocked": 0})
        row["n"] += 1
        row["classifier"] += int(p[i] >= t)
        if actions is not None:
            row["pipeline"] += int(actions[i] != "accept")
            row["pipeline_blocked"] += int(actions[i] in BLOCKING)
    out = sorted(rows.values(), key=lambda r: (r["label"], r["category"]))
    if actions is None:
        for line in out:
            line.pop("pipeline")
            line.pop("pipeline_blocked")
    return out


def evaluate(model_dir: Path | str, data: Sequence[str], report_dir: Path | str, *,
             threshold: float | None = None, whole_pipeline: bool = False,
             progress: bool = True, do_dedup: bool = True) -> EvalResult:
    model = load_model(model_dir)
    records = [r for r in load_many(data, model.channel) if r.channel is model.channel]
    if do_dedup:
        records, _ = dedup(records)
    if not records:
        raise InputError(f"no {model.channel.value} records in {', '.join(data)}")
    y = np.array([r.label for r in records])
    if y.sum() == 0 or y.sum() == y.size:
        raise InputError("evaluation data needs both spam and ham")
    p = score(model, records, progress=progress)
    t = model.threshold if threshold is None else threshold
    s = M.summary(y, p, threshold=t)
    actions = pipeline_actions(Path(model_dir), records, progress=progress) if whole_pipeline \
        else None
    cats = category_table(records, p, t, actions) if any(
        r.meta.get("category") for r in records) else []
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{model.ident} on {', '.join(Path(d).name for d in data)}"
    _plots(y, p, t, out, title)
    order = np.argsort(-p)
    worst_fp = [(float(p[i]), excerpt(records[i])) for i in order if y[i] == 0][:10]
    worst_fn = [(float(p[i]), excerpt(records[i])) for i in order[::-1] if y[i] == 1][:10]
    text = f"{title}\n" + M.describe(s)
    if cats:
        text += "\n" + format_categories(cats)
    html_path = out / "report.html"
    html_path.write_text(_html(title, model, s, cats, worst_fp, worst_fn), "utf-8")
    (out / "evaluation.json").write_bytes(orjson.dumps(
        {"model": model.ident, "data": list(data), "summary": s, "categories": cats},
        option=orjson.OPT_INDENT_2))
    return EvalResult(model.ident, s, text, html_path, cats)


def record_in_card(model_dir: Path | str, res: EvalResult, data: Sequence[str]) -> None:
    """Add an evaluation to the model's metrics.json and card.md (model.skops is untouched,
    so its sha256 stays valid)."""
    from gateway.learn.card import write_card
    from gateway.learn.registry import CARD_FILE, METRICS_FILE, read_metrics

    d = Path(model_dir)
    doc = read_metrics(d)
    s = res.summary
    a = s["at_threshold"]
    names = ", ".join(Path(x).name for x in data)
    text = (f"{s['n']} messages ({s['spam']} spam/fraud, {s['ham']} ham), AUC "
            + (f"{s['auc']:.4f}" if s.get("auc") is not None else "-")
            + f"; at the blocking threshold recall {a['recall']:.4f}, {a['fp']} ham blocked "
            f"({a['fpr']:.2%}); " + "; ".join(
                f"recall at {float(f):.2%} ham flagged {r['recall']:.4f} "
                f"({r['recall_ci'][0]:.4f} - {r['recall_ci'][1]:.4f})"
                for f, r in s["recall_at_fpr"].items()))
    if res.categories:
        text += "\n\n" + format_categories(res.categories)
    doc.setdefault("evaluations", {})[f"on {names}"] = text
    (d / METRICS_FILE).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    write_card(d / CARD_FILE, doc)


def format_categories(cats: Sequence[dict[str, Any]]) -> str:
    whole = bool(cats) and "pipeline" in cats[0]
    head = "| category | label | n | blocked by classifier |" + (
        " blocked by pipeline | flagged by pipeline (tag or more) |" if whole else "")
    lines = [head, "|---|---|---|---|" + ("---|---|" if whole else "")]
    for r in cats:
        line = f"| {r['category']} | {r['label']} | {r['n']} | {r['classifier']} |"
        if whole:
            line += f" {r['pipeline_blocked']} | {r['pipeline']} |"
        lines.append(line)
    return "\n".join(lines)


def _html(title: str, model: LoadedModel, s: dict[str, Any], cats: Sequence[dict[str, Any]],
          worst_fp: Sequence[tuple[float, str]], worst_fn: Sequence[tuple[float, str]]) -> str:
    e = html.escape
    a = s["at_threshold"]
    rows = "".join(
        f"<tr><td>{float(f):.2%}</td><td>{r['threshold']:.4f}</td><td>{r['recall']:.4f}</td>"
        f"<td>{r['recall_ci'][0]:.4f} - {r['recall_ci'][1]:.4f}</td><td>{r['fp']}</td>"
        f"<td>{r['f1']:.4f}</td></tr>"
        for f, r in s["recall_at_fpr"].items())
    cat_rows = "".join(
        f"<tr><td>{e(c['category'])}</td><td>{c['label']}</td><td>{c['n']}</td>"
        f"<td>{c['classifier']}</td>" + (f"<td>{c['pipeline_blocked']}</td><td>{c['pipeline']}</td>"
                                         if "pipeline" in c else "")
        + "</tr>" for c in cats)
    cat_html = (f"<h2>Per category</h2><table><tr><th>category</th><th>label</th><th>n</th>"
                f"<th>classifier blocks</th>"
                f"{'<th>pipeline blocks</th><th>pipeline flags</th>' if cats and 'pipeline' in cats[0] else ''}"
                f"</tr>{cat_rows}</table>") if cats else ""

    def ex(items: Sequence[tuple[float, str]]) -> str:
        return "".join(f"<tr><td>{q:.4f}</td><td>{e(t)}</td></tr>" for q, t in items)

    auc = f"{s['auc']:.4f}" if s.get("auc") is not None else "-"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;vertical-align:top}}img{{margin:4px}}</style>
</head><body><h1>{e(title)}</h1>
<p>{s['n']} messages ({s['spam']} spam/fraud, {s['ham']} ham). ROC AUC {auc}.
Threshold {a['threshold']:.4f}: F1 {a['f1']:.4f} (95% CI {s['f1_ci'][0]:.4f} - {s['f1_ci'][1]:.4f}),
recall {a['recall']:.4f}, precision {a['precision']:.4f}, ham flagged {a['fp']} ({a['fpr']:.3%}).</p>
<p>Model features {e(str(model.metrics.get('features_version')))}, trained
{e(str(model.metrics.get('created')))} from code {e(str(model.metrics.get('code_version')))}.</p>
<div>{''.join(f'<img src="{n}" width="420">' for n in PLOTS)}</div>
<h2>Threshold table at target false-positive rates</h2>
<table><tr><th>ham flagged target</th><th>threshold</th><th>recall</th><th>95% CI</th>
<th>ham flagged</th><th>F1</th></tr>{rows}</table>
{cat_html}
<h2>Worst false positives (ham with the highest scores)</h2><table>{ex(worst_fp)}</table>
<h2>Worst false negatives (spam with the lowest scores)</h2><table>{ex(worst_fn)}</table>
</body></html>"""


def compare(model_a: Path | str, model_b: Path | str, data: Sequence[str], *,
            progress: bool = True) -> str:
    """Two models side by side on the same (deduplicated) data, as a Markdown table."""
    a, b = load_model(model_a), load_model(model_b)
    if a.channel is not b.channel:
        raise InputError("the two models are for different channels")
    records, _ = dedup(r for r in load_many(data, a.channel) if r.channel is a.channel)
    if not records:
        raise InputError("no records to compare on")
    y = np.array([r.label for r in records])
    pa, pb = score(a, records, progress=progress), score(b, records, progress=progress)
    sa, sb = M.summary(y, pa, threshold=a.threshold), M.summary(y, pb, threshold=b.threshold)
    da, db = pa >= a.threshold, pb >= b.threshold
    lines = [f"{len(records)} messages ({int(y.sum())} spam, {int(y.size - y.sum())} ham)", "",
             f"| metric | {a.ident} | {b.ident} |", "|---|---|---|"]

    def row(name: str, fa: Any, fb: Any) -> None:
        lines.append(f"| {name} | {fa} | {fb} |")

    row("ROC AUC", f"{sa['auc']:.4f}", f"{sb['auc']:.4f}")
    row("threshold", f"{a.threshold:.4f}", f"{b.threshold:.4f}")
    for k in ("f1", "recall", "precision"):
        row(f"{k} at own threshold", f"{sa['at_threshold'][k]:.4f}", f"{sb['at_threshold'][k]:.4f}")
    row("ham flagged at own threshold", sa["at_threshold"]["fp"], sb["at_threshold"]["fp"])
    for f in sa["recall_at_fpr"]:
        row(f"recall at {float(f):.2%} FP", f"{sa['recall_at_fpr'][f]['recall']:.4f}",
            f"{sb['recall_at_fpr'][f]['recall']:.4f}")
    only_a = int(np.sum(da & ~db))
    only_b = int(np.sum(db & ~da))
    lines += ["", f"disagreements: flagged only by {a.ident}: {only_a} "
                  f"({int(np.sum(da & ~db & (y == 1)))} spam), only by {b.ident}: {only_b} "
                  f"({int(np.sum(db & ~da & (y == 1)))} spam)"]
    return "\n".join(lines)
