"""Model artifacts, their integrity check, and the live pointer per channel.

Layout under the models directory::

    models/<name>/<version>/model.skops     scikit-learn built-ins only, persisted with skops
    models/<name>/<version>/metrics.json    sha256 of model.skops, feature version, threshold,
                                            metrics with confidence intervals, data sources
    models/<name>/<version>/card.md         the model card for people
    models/live-<channel>                   text: "<name>/<version>" of the live model
    models/history-<channel>                previous live versions, one a line (for rollback)

Loading verifies the sha256, refuses any type outside `ALLOWED_TYPES` (skops' untrusted
types must be empty or allow-listed), and checks the feature version. Pointer updates are
atomic (write a temporary file, then rename), so a running gateway never reads half a pointer.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import scipy.sparse as sp

from gateway.errors import ModelError
from gateway.learn import featuresets
from gateway.learn.features import Features
from gateway.learn.featuresets import FeatureSet
from gateway.message import Channel

MODEL_FILE = "model.skops"
METRICS_FILE = "metrics.json"
CARD_FILE = "card.md"

# Types a model file may contain beyond those skops trusts by default. Anything else is refused.
ALLOWED_TYPES = frozenset({
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.pipeline.Pipeline",
    "numpy.float64",
    "numpy.int64",
    "numpy.ndarray",
    "numpy.dtype",
    "builtins.tuple",
})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_metrics(model_dir: Path) -> dict[str, Any]:
    path = model_dir / METRICS_FILE
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ModelError(f"{model_dir}: no {METRICS_FILE}") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def load_estimator(path: Path, expected_sha256: str) -> Any:
    """Load a skops file after its sha256 check, with an explicit type allow-list."""
    import skops.io as sio

    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise ModelError(f"{path} is missing") from None
    except OSError as exc:
        raise ModelError(f"{path}: unreadable: {exc.strerror}") from None
    if not expected_sha256 or actual != expected_sha256:
        raise ModelError(f"{path}: sha256 {actual[:12]}... does not match the recorded "
                         f"{expected_sha256[:12] or 'nothing'}...: refusing to load")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelError(f"{path}: not a skops file: {type(exc).__name__}") from None
    refused = [t for t in untrusted if t not in ALLOWED_TYPES]
    if refused:
        raise ModelError(f"{path}: contains types outside the allow-list: {', '.join(refused)}")
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise ModelError(f"{path}: cannot load: {type(exc).__name__}: {exc}") from None


class LinearScorer:
    """Exact fast path for a sigmoid-calibrated linear model (CalibratedClassifierCV with
    ensemble=False over a LogisticRegression): p = 1 / (1 + exp(a * (w.x + b) + c)).

    Avoids scikit-learn's per-call validation, which costs more than the arithmetic for one SMS.
    Built from the loaded estimator and cross-checked against its predict_proba at load time.
    """

    def __init__(self, estimator: Any) -> None:
        cals = estimator.calibrated_classifiers_
        if len(cals) != 1 or len(cals[0].calibrators) != 1:
            raise ValueError("not a single calibrated binary classifier")
        cal = cals[0]
        base = cal.estimator
        cal1 = cal.calibrators[0]
        if type(cal1).__name__ != "_SigmoidCalibration":
            raise ValueError("not a sigmoid calibration")
        self.w = np.ascontiguousarray(base.coef_.ravel(), dtype=np.float64)
        self.b = float(base.intercept_[0])
        self.a = float(cal1.a_)
        self.c = float(cal1.b_)
        if list(estimator.classes_) != [0, 1]:
            raise ValueError("classes must be [0, 1]")

    def decision(self, X: sp.csr_matrix) -> np.ndarray:
        return np.asarray(X @ self.w + self.b).ravel()

    def proba(self, X: sp.csr_matrix) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(self.a * self.decision(X) + self.c))

    def proba_rows(self, rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Many messages from their (column, value) pairs: one gather and one segmented sum,
        no sparse matrix (building one costs more than the arithmetic)."""
        if not rows:
            return np.zeros(0)
        sizes = np.fromiter((r[0].size for r in rows), dtype=np.int64, count=len(rows))
        idx = np.concatenate([r[0] for r in rows])
        val = np.concatenate([r[1] for r in rows])
        return self.proba_concat(idx, val, sizes)

    def proba_concat(self, idx: np.ndarray, val: np.ndarray,
                     sizes: np.ndarray | Sequence[int]) -> np.ndarray:
        """`proba_rows` of rows already laid end to end (sizes: the length of each row)."""
        contrib = val * self.w[idx]
        n = sizes.tolist() if isinstance(sizes, np.ndarray) else list(sizes)
        if contrib.size and min(n) > 0:  # every row has columns (s3 rows always do)
            dots = np.add.reduceat(contrib, [0, *accumulate(n[:-1])])
        else:
            sizes = np.asarray(n, dtype=np.int64)
            starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
            dots = np.zeros(len(sizes))
            nonempty = sizes > 0
            if contrib.size:
                dots[nonempty] = np.add.reduceat(contrib, starts[nonempty])
        z = np.minimum(self.a * (dots + self.b) + self.c, 700.0)
        out: np.ndarray = 1.0 / (1.0 + np.exp(z))
        return out

    def proba_row(self, idx: np.ndarray, val: np.ndarray) -> float:
        """One message from its (column, value) pairs: no sparse matrix at all."""
        z = self.a * (float(val @ self.w[idx]) + self.b) + self.c
        return 1.0 / (1.0 + math.exp(min(z, 700.0)))


@dataclass
class LoadedModel:
    """A model ready to score: its estimator, metadata and fast path."""

    name: str
    version: str
    channel: Channel
    path: Path
    estimator: Any
    metrics: dict[str, Any]
    threshold: float
    scorer: LinearScorer | None
    features: FeatureSet = featuresets.SETS["f2"]

    @property
    def ident(self) -> str:
        return f"{self.name}/{self.version}"

    def proba(self, items: Sequence[Features]) -> np.ndarray:
        if self.scorer is not None:
            return self.scorer.proba_rows([self.features.row(f) for f in items])
        return np.asarray(self.estimator.predict_proba(self.features.vectorise(items))[:, 1])

    def proba_rows(self, rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Probabilities of many messages from their hashed rows (see features.row)."""
        if self.scorer is not None:
            return self.scorer.proba_rows(rows)
        return np.asarray(self.estimator.predict_proba(self.features.stack(rows))[:, 1])

    def score_many(self, items: Sequence[Features]
                   ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """(probabilities, hashed rows) of many messages: the same numbers as `row` per message
        and `proba_rows`, with the feature set's batch featuriser when it has one."""
        idx, val, sizes = self.features.rows_many(items)
        rows: list[tuple[np.ndarray, np.ndarray]] = []
        o = 0
        for n in sizes:
            rows.append((idx[o:o + n], val[o:o + n]))
            o += n
        if self.scorer is not None:
            if len(rows) == 1:  # what `run` computes for one message, without the batch set-up
                return np.array([self.scorer.proba_row(idx, val)]), rows
            return self.scorer.proba_concat(idx, val, sizes), rows
        return self.proba_rows(rows), rows

    def proba_row(self, idx: np.ndarray, val: np.ndarray) -> float:
        """The probability of one message given its hashed features (see features.row)."""
        if self.scorer is not None:
            return self.scorer.proba_row(idx, val)
        X = sp.csr_matrix((val, idx, np.array([0, idx.size])), shape=(1, self.features.n_features))
        X.sum_duplicates()
        return float(self.estimator.predict_proba(X)[0, 1])


_CACHE: dict[tuple[str, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def load_model(model_dir: Path | str) -> LoadedModel:
    """Load and verify a model directory (cached by path and sha256)."""
    d = Path(model_dir).resolve()
    if not d.is_dir():
        raise ModelError(f"model directory {d} does not exist")
    meta = read_metrics(d)
    sha = str(meta.get("sha256", ""))
    key = (str(d), sha)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    try:
        fs = featuresets.get(str(meta.get("features_version")))
    except KeyError:
        raise ModelError(f"{d}: built for features {meta.get('features_version')!r}, this code "
                         f"has {', '.join(sorted(featuresets.SETS))}: retrain it") from None
    if int(meta.get("n_features", 0)) != fs.n_features:
        raise ModelError(f"{d}: feature space size differs from this code: retrain it")
    try:
        channel = Channel(meta.get("channel", ""))
    except ValueError:
        raise ModelError(f"{d}: metrics.json names no valid channel") from None
    est = load_estimator(d / MODEL_FILE, sha)
    if not hasattr(est, "predict_proba"):
        raise ModelError(f"{d}: the estimator cannot predict probabilities")
    scorer: LinearScorer | None
    try:
        scorer = LinearScorer(est)
    except (AttributeError, ValueError, IndexError):
        scorer = None
    model = LoadedModel(
        name=str(meta.get("name") or d.parent.name),
        version=str(meta.get("version") or d.name),
        channel=channel,
        path=d,
        estimator=est,
        metrics=meta,
        threshold=float(meta.get("threshold", 0.5)),
        scorer=scorer,
        features=fs,
    )
    _self_test(model)
    with _CACHE_LOCK:
        _CACHE[key] = model
    return model


def _self_test(model: LoadedModel) -> None:
    """Score probe messages both ways; a fast path that disagrees is dropped."""
    probes = [Features(model.channel, t) for t in ("hello, see you at 7", "WIN a prize! call now",
                                                    "")]
    try:
        X = model.features.vectorise(probes)
        ref = np.asarray(model.estimator.predict_proba(X)[:, 1])
    except Exception as exc:
        raise ModelError(f"{model.path}: the model fails to score: {type(exc).__name__}") from None
    if model.scorer is not None and not np.allclose(model.scorer.proba(X), ref, atol=1e-9):
        model.scorer = None


# -- the live pointer -----------------------------------------------------------------------


def pointer_path(models_dir: Path, channel: Channel | str) -> Path:
    return Path(models_dir) / f"live-{Channel(channel).value}"


def history_path(models_dir: Path, channel: Channel | str) -> Path:
    return Path(models_dir) / f"history-{Channel(channel).value}"


def read_pointer(models_dir: Path, channel: Channel | str) -> str | None:
    try:
        value = pointer_path(models_dir, channel).read_text("utf-8").strip()
    except FileNotFoundError:
        return None
    return value or None


def live_dir(models_dir: Path, channel: Channel | str) -> Path | None:
    ref = read_pointer(models_dir, channel)
    return (Path(models_dir) / ref) if ref else None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def _ref_of(models_dir: Path, model_dir: Path) -> str:
    d = Path(model_dir).resolve()
    try:
        return d.relative_to(Path(models_dir).resolve()).as_posix()
    except ValueError:
        return str(d)


def promote(models_dir: Path, model_dir: Path) -> tuple[str | None, str]:
    """Make a verified model live for its channel. Returns (previous ref, new ref)."""
    model = load_model(model_dir)  # refuse to promote anything that does not load
    models_dir = Path(models_dir)
    ref = _ref_of(models_dir, model.path)
    prev = read_pointer(models_dir, model.channel)
    if prev == ref:
        return prev, ref
    if prev:
        with history_path(models_dir, model.channel).open("a", encoding="utf-8") as fh:
            fh.write(prev + "\n")
    _atomic_write(pointer_path(models_dir, model.channel), ref + "\n")
    return prev, ref


def rollback(models_dir: Path, channel: Channel | str) -> tuple[str | None, str]:
    """Return the channel to its previous live model. Returns (replaced ref, restored ref)."""
    models_dir = Path(models_dir)
    hist = history_path(models_dir, channel)
    try:
        lines = [ln.strip() for ln in hist.read_text("utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        lines = []
    if not lines:
        raise ModelError(f"no earlier {Channel(channel).value} model to roll back to")
    target = lines[-1]
    load_model(models_dir / target)
    cur = read_pointer(models_dir, channel)
    _atomic_write(pointer_path(models_dir, channel), target + "\n")
    _atomic_write(hist, "".join(ln + "\n" for ln in lines[:-1]))
    return cur, target


def list_models(models_dir: Path) -> list[dict[str, Any]]:
    """Every model directory under models_dir with its metadata and live flag."""
    models_dir = Path(models_dir)
    live = {read_pointer(models_dir, ch) for ch in Channel}
    out: list[dict[str, Any]] = []
    if not models_dir.is_dir():
        return out
    for metrics in sorted(models_dir.glob(f"*/*/{METRICS_FILE}")):
        d = metrics.parent
        try:
            meta = read_metrics(d)
        except ModelError:
            continue
        ref = _ref_of(models_dir, d)
        out.append({
            "ref": ref,
            "channel": meta.get("channel"),
            "created": meta.get("created"),
            "threshold": meta.get("threshold"),
            "features_version": meta.get("features_version"),
            "live": ref in live,
        })
    return out
