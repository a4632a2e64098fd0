"""`mamori model ...`: the trust team's model lifecycle.

    mamori model train --channel sms|email --data PATH... --out DIR
    mamori model evaluate MODEL_DIR --data PATH... [--report DIR]
    mamori model compare MODEL_A MODEL_B --data PATH... | --shadow EVENTS.jsonl
    mamori model promote MODEL_DIR
    mamori model rollback --channel sms|email
    mamori model list
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli import _fail
from gateway.errors import GatewayError


def _models_dir() -> Path:
    from gateway.config import load_settings

    return load_settings().models_dir()


@click.group()
def model() -> None:
    """Train, evaluate, compare, promote and roll back classifier models."""


@model.command()
@click.option("--channel", type=click.Choice(["sms", "email"]), required=True)
@click.option("--data", "data", multiple=True, required=True,
              help="dataset path (repeatable): TSV, JSON lines, TREC index, folder with labels.csv")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="model directory to write (e.g. models/sms-linear/2026.11.26)")
@click.option("--name", default=None, help="model name (default: <channel>-linear)")
@click.option("--version", "version", default=None, help="model version (default: date-time)")
@click.option("--cv", "cv_folds", default=10, show_default=True,
              help="cross-validation folds (0: none)")
@click.option("--C", "C", type=float, default=None, help="inverse regularisation strength")
@click.option("--target-fpr", default=0.001, show_default=True,
              help="ham false-positive rate the decision threshold is chosen for")
@click.option("--holdout-last", type=float, default=0.0,
              help="temporal split: hold out this fraction of the latest messages for testing")
@click.option("--note", "notes", multiple=True, help="a note for the model card (repeatable)")
@click.option("--threshold-source", default=None,
              help="choose thresholds on this source's CV scores only (e.g. "
                   "uci_sms_spam_train.tsv), not diluted by easier extra data")
@click.option("--features", "features_version", default=None,
              help="feature set version (default: the channel's current default)")
@click.option("--tag-fpr", type=float, default=None,
              help="ham false-positive rate of the tag tier (default: 1% SMS, 0.5% email)")
@click.option("--quiet", is_flag=True, help="no progress bars")
def train(channel: str, data: tuple[str, ...], out: Path, name: str | None, version: str | None,
          cv_folds: int, C: float | None, target_fpr: float, holdout_last: float,
          notes: tuple[str, ...], threshold_source: str | None, features_version: str | None,
          tag_fpr: float | None, quiet: bool) -> None:
    """Train a model on labelled data and write a model directory with its card."""
    from gateway.learn.datasets import load_many
    from gateway.learn.train import train as do_train
    from gateway.message import Channel

    try:
        ch = Channel(channel)
        records = load_many(list(data), ch)
        doc = do_train(ch, records, out, name=name, version=version, C=C, cv_folds=cv_folds,
                       target_fpr=target_fpr, progress=not quiet, holdout_last=holdout_last,
                       notes=notes, threshold_source=threshold_source,
                       features_version=features_version, tag_fpr=tag_fpr, log=lambda s: click.echo(s, err=True))
    except GatewayError as exc:
        _fail(exc)
        return
    click.echo(f"wrote {out} ({doc['name']} {doc['version']}, threshold {doc['threshold']:.4f}, "
               f"sha256 {doc['sha256'][:12]})")


@model.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--data", "data", multiple=True, required=True, help="dataset path (repeatable)")
@click.option("--report", "report", type=click.Path(path_type=Path), default=None,
              help="report directory (default: MODEL_DIR/report)")
@click.option("--threshold", type=float, default=None,
              help="decision threshold (default: the model's own)")
@click.option("--pipeline", "whole", is_flag=True,
              help="also score through the whole pipeline (per-category tables)")
@click.option("--record", is_flag=True,
              help="add the result to the model's metrics.json and card.md")
@click.option("--quiet", is_flag=True, help="no progress bars")
def evaluate(model_dir: Path, data: tuple[str, ...], report: Path | None,
             threshold: float | None, whole: bool, record: bool, quiet: bool) -> None:
    """Evaluate a model on labelled data: HTML report with PNG plots."""
    from gateway.learn.evaluate import evaluate as do_eval
    from gateway.learn.evaluate import record_in_card

    try:
        res = do_eval(model_dir, list(data), report or (Path(model_dir) / "report"),
                      threshold=threshold, whole_pipeline=whole, progress=not quiet)
        if record:
            record_in_card(model_dir, res, list(data))
    except GatewayError as exc:
        _fail(exc)
        return
    click.echo(res.text)
    click.echo(f"report: {res.html}")


@model.command()
@click.argument("model_a", type=click.Path(path_type=Path))
@click.argument("model_b", type=click.Path(path_type=Path), required=False)
@click.option("--data", "data", multiple=True, help="dataset path (repeatable)")
@click.option("--shadow", "shadow", type=click.Path(path_type=Path), default=None,
              help="shadow events (JSON lines) to summarise instead of labelled data")
@click.option("--quiet", is_flag=True, help="no progress bars")
def compare(model_a: Path, model_b: Path | None, data: tuple[str, ...], shadow: Path | None,
            quiet: bool) -> None:
    """Put two model versions side by side on the same data (or on shadow events)."""
    from gateway.learn.evaluate import compare as do_compare
    from gateway.learn.shadow import summarise

    try:
        if shadow is not None:
            click.echo(summarise(shadow))
            return
        if model_b is None or not data:
            raise click.UsageError("give two model directories and --data (or --shadow FILE)")
        click.echo(do_compare(model_a, model_b, list(data), progress=not quiet))
    except GatewayError as exc:
        _fail(exc)


@model.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
def promote(model_dir: Path) -> None:
    """Make a model live for its channel; a running gateway switches within a second."""
    from gateway.learn.registry import promote as do_promote

    try:
        prev, ref = do_promote(_models_dir(), model_dir)
    except GatewayError as exc:
        _fail(exc)
        return
    click.echo(f"live: {ref}" + (f" (was {prev})" if prev and prev != ref else ""))


@model.command()
@click.option("--channel", type=click.Choice(["sms", "email"]), required=True)
def rollback(channel: str) -> None:
    """Return a channel to its previous live model."""
    from gateway.learn.registry import rollback as do_rollback

    try:
        cur, ref = do_rollback(_models_dir(), channel)
    except GatewayError as exc:
        _fail(exc)
        return
    click.echo(f"live: {ref} (was {cur})")


@model.command("list")
def list_() -> None:
    """List the model versions under the models directory."""
    from gateway.learn.registry import list_models

    rows = list_models(_models_dir())
    if not rows:
        click.echo("no models")
        return
    for r in rows:
        mark = "*" if r["live"] else " "
        thr = f"{r['threshold']:.4f}" if isinstance(r["threshold"], float) else "-"
        click.echo(f"{mark} {r['ref']:<40} {r['channel']:<6} threshold {thr}  "
                   f"features {r['features_version']}  {r['created']}")
