"""Shared pieces of the "output never moves" tests: a fixed corpus sample, the digest of a
hashed feature row, and the list of sample items whose digest moved."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE = 300  # corpus messages


def corpus_sample(corpus: Path, start: int = 0, step: int = 20, size: int = SAMPLE) -> list[Path]:
    """Every `step`-th message of a labelled corpus (labels.csv) by path order, from `start`."""
    rows = (corpus / "labels.csv").read_text().splitlines()[1:]
    paths = sorted(r.split(",", 1)[0] for r in rows if r)
    return [corpus / p for p in paths[start::step][:size]]


def row_hash(idx: np.ndarray, val: np.ndarray) -> Any:
    """sha256 over a feature row's indices (<i8) and values (<f8), bit for bit; the caller may
    add more before taking the digest."""
    h = hashlib.sha256()
    h.update(idx.astype("<i8").tobytes())
    h.update(val.astype("<f8").tobytes())
    return h


def moved(expected: Mapping[str, str], got: Mapping[str, str]) -> list[str]:
    """The sample items whose digest differs from the recorded one."""
    return sorted(p for p in expected if got.get(p) != expected[p])
