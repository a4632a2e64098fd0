"""A held-out email model for mamori: trained with `mamori model train` on the corpus minus the
messages being measured, so that its recall and false-positive rate are not training-set
figures (the shipped model may have been trained on this very corpus)."""

from __future__ import annotations

import csv
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ENV = "MAMORI_MODEL__EMAIL"


def has_trainer() -> bool:
    """Whether this checkout has `mamori model train` (gateway/learn)."""
    try:
        return importlib.util.find_spec("gateway.learn.cli") is not None
    except ModuleNotFoundError:
        return False


def write_training_set(folder: Path, corpus_dir: Path, rows: Iterable[tuple[str, str, bool]],
                       exclude: set[str]) -> int:
    """labels.csv (absolute paths) of every row whose path is not in `exclude`; the count."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group", "label"])
        for path, group, spam in rows:
            if path in exclude:
                continue
            w.writerow([str((corpus_dir / path).resolve()), group, "spam" if spam else "ham"])
            n += 1
    return n


def live_recipe(models_dir: Path) -> dict[str, str]:
    """How the live (shipped) email model of `models_dir` was trained, as `mamori model train`
    options: its feature version, C and target false-positive rate, read from its
    metrics.json. The held-out model repeats that recipe, so that perf/compare measures the
    features and the estimator an operator runs (train's defaults may be another feature
    version, with another cost per message). Empty when there is no live model to copy."""
    from gateway.errors import GatewayError
    from gateway.learn.registry import live_dir, read_metrics

    live = live_dir(models_dir, "email")
    if live is None:
        return {}
    try:
        doc = read_metrics(live)
    except GatewayError:
        return {}
    recipe: dict[str, str] = {}
    if isinstance(doc.get("features_version"), str):
        recipe["--features"] = doc["features_version"]
    m = re.search(r"\bC=([0-9.eE+-]+)", str(doc.get("estimator", "")))
    if m:
        recipe["--C"] = m.group(1)
    if isinstance(doc.get("target_fpr"), (int, float)):
        recipe["--target-fpr"] = repr(doc["target_fpr"])
    return recipe


def train(folder: Path, out: Path, env: dict[str, str], log: Path,
          recipe: dict[str, str] | None = None) -> Path:
    """`mamori model train --channel email` on `folder` (with `recipe`'s options, see
    `live_recipe`), without cross-validation; the model dir."""
    argv = [sys.executable, "-m", "gateway", "model", "train", "--channel", "email",
            "--data", str(folder), "--out", str(out), "--cv", "0", "--quiet",
            "--version", "holdout"]
    for opt, value in (recipe or {}).items():
        argv += [opt, value]
    with log.open("wb") as fh:
        r = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=3600)
    if r.returncode != 0 or not out.is_dir():
        tail = log.read_text(errors="replace").splitlines()[-10:]
        raise RuntimeError("mamori model train failed:\n" + "\n".join(tail))
    return out
