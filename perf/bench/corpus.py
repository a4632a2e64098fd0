"""The labelled email corpus (SpamAssassin public corpus under the shared data folder)."""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SUBDIR = Path("email") / "spamassassin"


@dataclass(frozen=True, slots=True)
class Sample:
    path: str  # relative to the corpus folder
    group: str
    spam: bool
    raw: bytes


def default_corpus_dir() -> Path:
    base = os.environ.get("MAMORI_SHARED_DATA")
    if base:
        return Path(base) / DEFAULT_SUBDIR
    # ../shared/data beside the checkout (as in CI), or one level further up for a worktree
    root = Path(__file__).resolve().parents[2]
    for base_dir in (root.parent, root.parent.parent):
        if (base_dir / "shared" / "data" / DEFAULT_SUBDIR).is_dir():
            return base_dir / "shared" / "data" / DEFAULT_SUBDIR
    return root.parent / "shared" / "data" / DEFAULT_SUBDIR


def read_labels(labels_csv: Path) -> list[tuple[str, str, bool]]:
    """(path, group, is_spam) rows of labels.csv; a clear error on a malformed file."""
    rows: list[tuple[str, str, bool]] = []
    with labels_csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{labels_csv}: missing column(s) {', '.join(sorted(missing))}")
        for lineno, row in enumerate(reader, 2):
            label = (row["label"] or "").strip().lower()
            if label not in ("spam", "ham"):
                raise ValueError(f"{labels_csv}:{lineno}: label must be spam or ham, got {label!r}")
            rows.append((row["path"], (row.get("group") or "").strip(), label == "spam"))
    if not rows:
        raise ValueError(f"{labels_csv}: no rows")
    return rows


def select(rows: list[tuple[str, str, bool]], limit: int | None, seed: int = 1) -> list[tuple[str, str, bool]]:
    """A deterministic sample of `limit` rows keeping the corpus's spam/ham ratio (all rows
    without a limit), shuffled so that no system sees all spam first."""
    rng = random.Random(seed)
    rows = list(rows)
    rng.shuffle(rows)
    if limit is None or limit >= len(rows):
        return rows
    if limit <= 0:
        raise ValueError("limit must be positive")
    spam = [r for r in rows if r[2]]
    ham = [r for r in rows if not r[2]]
    n_spam = min(len(spam), max(1 if spam else 0, round(limit * len(spam) / len(rows))))
    n_ham = min(len(ham), limit - n_spam)
    picked = spam[:n_spam] + ham[:n_ham]
    rng.shuffle(picked)
    return picked


def load(corpus_dir: Path, limit: int | None = None, seed: int = 1) -> list[Sample]:
    labels = corpus_dir / "labels.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"{labels} not found (set MAMORI_SHARED_DATA or --corpus)")
    return [
        Sample(path, group, spam, (corpus_dir / path).read_bytes())
        for path, group, spam in select(read_labels(labels), limit, seed)
    ]
