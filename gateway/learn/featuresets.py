"""Feature sets by version: a model records the version it was trained with and is scored
with exactly that code, so several versions can live side by side (a shadow candidate on a
new version next to the live model on the old one).

A feature set is a `row(Features) -> (column indices, values)` function and the size of its
hashed space. To add one: write its module (e.g. ``gateway/learn/features_f3.py``), add one
line to `SETS` below, and make it the default for a channel in `DEFAULT_VERSION` once a
model trained with it is shipped. Never change what an existing version computes: models
trained with it would silently score differently (tests/learn/test_features_stable.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gateway.learn import features as _f2
from gateway.learn import features_email as _e3
from gateway.learn import features_sms as _s3
from gateway.learn.features import Features
from gateway.message import Channel

RowFn = Callable[[Features], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class FeatureSet:
    version: str
    n_features: int
    row: RowFn
    # optional: the rows of many messages laid end to end, (indices, values, row sizes); the
    # same numbers as concatenating `row` of each
    rows_concat: Callable[[Sequence[Features]], tuple[np.ndarray, np.ndarray, list[int]]] | None \
        = None

    def rows_many(self, items: Sequence[Features]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """The rows of many messages laid end to end: (indices, values, size of each row)."""
        if self.rows_concat is not None and len(items) >= 2:  # s3's pays from 2 (~8%)
            return self.rows_concat(items)
        if len(items) == 1:  # no copies
            idx, val = self.row(items[0])
            return idx, val, [idx.size]
        rows = [self.row(f) for f in items]
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0), []
        return (np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows]),
                [r[0].size for r in rows])

    def vectorise(self, items: Iterable[Features]) -> sp.csr_matrix:
        """Hash a batch of messages into a CSR matrix of shape (n, n_features)."""
        return self.stack(map(self.row, items))

    def stack(self, rows: Iterable[tuple[np.ndarray, np.ndarray]]) -> sp.csr_matrix:
        """Rows from `row` (already computed) as a CSR matrix of shape (n, n_features)."""
        indptr = [0]
        idx: list[np.ndarray] = []
        val: list[np.ndarray] = []
        for i, v in rows:
            idx.append(i)
            val.append(v)
            indptr.append(indptr[-1] + i.size)
        X = sp.csr_matrix(
            (np.concatenate(val) if val else np.zeros(0),
             np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64),
             np.array(indptr, dtype=np.int64)),
            shape=(len(indptr) - 1, self.n_features),
        )
        X.sum_duplicates()
        return X


SETS: dict[str, FeatureSet] = {
    "f2": FeatureSet("f2", _f2.N_FEATURES, _f2.row),
    # SMS: pure-Python hashing (2.5x cheaper than f2) and richer SMS structure tokens
    "s3": FeatureSet("s3", _s3.N_FEATURES, _s3.row, _s3.rows_concat),
    "e3": FeatureSet("e3", _e3.N_FEATURES, _e3.row),  # email only (features_email.py)
}

# the version `mamori model train` uses for a channel unless --features says otherwise
DEFAULT_VERSION: dict[Channel, str] = {
    Channel.SMS: "s3",
    Channel.EMAIL: "e3",
}


def get(version: str) -> FeatureSet:
    """The feature set of that version (KeyError names the known ones)."""
    try:
        return SETS[version]
    except KeyError:
        raise KeyError(f"unknown features version {version!r} (this code has "
                       f"{', '.join(sorted(SETS))})") from None


def default_for(channel: Channel) -> FeatureSet:
    return SETS[DEFAULT_VERSION[channel]]
