"""The content classifier check for SMS and email.

One check per channel scores the message with the channel's model and emits
`CLASSIFIER_SPAM` with a factor derived from the calibrated probability:

- below the model's tag threshold (at most 1% ham flagged in cross-validation): no symbol
- from the tag threshold up to the quarantine threshold: factor 5/12 .. <9/12 (tag, with the
  default weight 12 and action thresholds tag 5 / quarantine 9 / reject 12)
- the quarantine threshold (at most 0.1% ham in cross-validation): 9/12, blocking starts
- the reject threshold (at most 0.01% ham): 1.0; up to 1.1 at p = 1

Which model: `env.overrides["model.<channel>"]` (`mamori scan --model DIR`), else
`MAMORI_MODEL__SMS` / `MAMORI_MODEL__EMAIL`, else the live pointer of the channel in
`settings.models_dir()`. A configured model that is missing or corrupt refuses to start
(ModelError); a missing live model makes the check fail (CHECK_FAILED), never the scan.
When started (serve), the check watches the live pointer and swaps to a promoted model
atomically (one reference assignment), so no message is dropped or scored half-way.

Shadow mode: `MAMORI_MODEL__SHADOW_SMS` / `MAMORI_MODEL__SHADOW_EMAIL` name a candidate model
directory; it scores the same features next to the live model and its result goes to
`ctx.versions`, a metric and the `shadow` event stream only, never to the action.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter

from gateway.errors import CheckError, ModelError
from gateway.learn.features import Features
from gateway.learn.registry import LoadedModel, live_dir, load_model, pointer_path
from gateway.message import Channel, ScanContext
from gateway.pipeline import Check, Stage
from gateway.verdict import Symbol, SymbolSpec

log = logging.getLogger("mamori.classifier")

SYMBOL = "CLASSIFIER_SPAM"
SPEC = SymbolSpec(SYMBOL, "classifier",
                  "the content classifier scored the message as spam or fraud")
TAG_P = 0.5
REJECT_WEIGHT = 12.0  # the default weight of CLASSIFIER_SPAM (scores.toml)
WATCH_INTERVAL = 1.0
BIG_TEXT = 64_000  # email text longer than this is featurised in a worker thread
PRESCORED = "classifier.prescored"  # ctx.data: (model, p) from a batch (prescore)
_FEATURES_KEYS: dict[str, str] = {}  # feature version -> its ctx.data key


def _features_key(model: LoadedModel) -> str:
    """ctx.data's key of a message's hashed features for the model's feature version."""
    version = model.features.version
    key = _FEATURES_KEY_OF(version)
    if key is None:
        key = _FEATURES_KEYS[version] = f"classifier.features.{version}"
    return key


_FEATURES_KEY_OF = _FEATURES_KEYS.get

SHADOW_SCORED = Counter(
    "mamori_shadow_verdicts_total", "Messages scored by a shadow model, by agreement with live",
    ["channel", "agreement"],
)


def factor_for(p: float, t_tag: float, t_quarantine: float, t_reject: float) -> float:
    """Map a calibrated probability to the symbol factor (0 means: no symbol).

    The model's thresholds are tied to ham false-positive rates in cross-validation (tag 1%,
    quarantine 0.1%, reject 0.01%). With the default weight 12: the tag threshold scores 5,
    the quarantine threshold 9, the reject threshold 12, p = 1 13.2; anything below the
    quarantine threshold stays under 9, so only the blocking tiers block.
    """
    t_tag = t_tag if 0.0 < t_tag <= t_quarantine else min(TAG_P, t_quarantine)
    if p < t_tag:
        return 0.0
    t_quarantine = min(max(t_quarantine, t_tag + 1e-9), 0.999998)
    if not t_quarantine < t_reject < 1.0:
        t_reject = (t_quarantine + 1.0) / 2
    xs = (t_tag, t_quarantine, t_reject, 1.0)
    ys = (5.0 / REJECT_WEIGHT, 9.0 / REJECT_WEIGHT, 1.0, 1.1)
    f = _interp(p, xs, ys)
    if p < t_quarantine:
        return min(f, 8.99 / REJECT_WEIGHT)
    return f


def _interp(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    """np.interp for one value (the same formula, without numpy's per-call cost)."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    j = bisect_right(xs, x) - 1
    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
    return slope * (x - xs[j]) + ys[j]


def thresholds_of(model: LoadedModel) -> tuple[float, float, float]:
    """(tag, quarantine, reject) probability thresholds recorded with the model."""
    t = model.metrics.get("thresholds") or {}
    q = float(t.get("quarantine", model.threshold))
    return float(t.get("tag", min(TAG_P, q))), q, float(t.get("reject", float("nan")))


class ModelSlot:
    """The model a check uses now: fixed (a configured directory) or following the live
    pointer of a models directory. `model` is swapped by a single assignment."""

    def __init__(self, channel: Channel, *, fixed: Path | None = None,
                 models_dir: Path | None = None) -> None:
        self.channel = channel
        self.fixed = fixed
        self.models_dir = models_dir
        self.model: LoadedModel | None = None
        self.error: str | None = None
        self._seen: tuple[int, int] | None = None
        if fixed is not None:
            self.model = self._load(fixed)  # raises ModelError: refuse to start
        else:
            self.refresh()

    def _load(self, d: Path) -> LoadedModel:
        model = load_model(d)
        if model.channel is not self.channel:
            raise ModelError(f"{d} is a {model.channel.value} model, not {self.channel.value}")
        return model

    def _pointer_state(self) -> tuple[int, int] | None:
        assert self.models_dir is not None
        try:
            st = os.stat(pointer_path(self.models_dir, self.channel))
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    def refresh(self) -> bool:
        """Reload if the live pointer changed. Returns whether the model changed."""
        if self.fixed is not None or self.models_dir is None:
            return False
        state = self._pointer_state()
        if state == self._seen and (self.model is not None or self.error is not None):
            return False
        self._seen = state
        d = live_dir(self.models_dir, self.channel)
        if d is None:
            self.error = f"no live {self.channel.value} model in {self.models_dir}"
            if self.model is None:
                log.error("%s", self.error)
            return False
        try:
            model = self._load(d)
        except ModelError as exc:
            self.error = str(exc)
            log.error("cannot load the live %s model: %s", self.channel.value, exc)
            return False
        changed = self.model is None or model.ident != self.model.ident
        self.model, self.error = model, None
        if changed:
            log.info("live %s model is now %s", self.channel.value, model.ident)
        return changed


class ClassifierCheck(Check):
    """Scores one channel's messages with its live (or configured) model."""

    symbols = (SPEC,)
    stage = Stage.NORMAL

    def __init__(self, channel: Channel, slot: ModelSlot, shadow: ModelSlot | None = None,
                 events: Any = None) -> None:
        self.channel = channel
        self.slot = slot
        self.shadow = shadow
        self.events = events
        self._watch: asyncio.Task[None] | None = None
        # the model these were read from: its thresholds and ident (read once per model)
        self._thresholds: tuple[LoadedModel | None, tuple[float, float, float], str] = (
            None, (0.0, 0.0, 0.0), "")

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.slot.fixed is None and self._watch is None:
            self._watch = asyncio.create_task(self._watch_pointer(),
                                              name=f"model-watch-{self.channel.value}")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def _watch_pointer(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                await asyncio.to_thread(self.slot.refresh)
            except Exception:
                log.exception("model watch failed")

    # -- scoring --------------------------------------------------------------------------

    def features(self, ctx: ScanContext, model: LoadedModel | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """The message's hashed features for a model's feature set (default: the live model's),
        computed once per message and feature version and cached in ctx.data."""
        model = model or self.slot.model
        if model is None:
            raise CheckError(self.slot.error or "no model")
        key = _features_key(model)
        cached = ctx.data.get(key)
        if cached is None:
            cached = model.features.row(Features.from_context(ctx))
            ctx.data[key] = cached
        return cached

    def prescore(self, ctxs: Sequence[ScanContext]) -> np.ndarray:
        """Score many messages at once (the batch entry point, e.g. for an HTTP batch hook).

        Featurises each message (cached in ctx.data like `run` does), scores them all in one
        vectorised pass and remembers each probability with the model that gave it, so that the
        pipeline's per-message `run` afterwards only maps it to a symbol. Returns the
        probabilities in the order of ctxs."""
        model = self.slot.model
        if model is None:
            raise CheckError(self.slot.error or "no model")
        key = _features_key(model)
        if len(ctxs) == 1 and model.scorer is not None and key not in ctxs[0].data:
            # one message: what `score_many` computes for one (its feature set's `row`, the
            # scorer's `proba_row`), without the batch's lists and slices
            ctx = ctxs[0]
            row = ctx.data[key] = model.features.row(Features.from_context(ctx))
            pi = model.scorer.proba_row(*row)
            ctx.data[PRESCORED] = (model, pi)
            return np.array([pi])
        if any(key in ctx.data for ctx in ctxs):
            p = model.proba_rows([self.features(ctx, model) for ctx in ctxs])
        else:  # featurised as one batch (the same rows), each row kept like `features` does
            p, rows = model.score_many([Features.from_context(ctx) for ctx in ctxs])
            for ctx, r in zip(ctxs, rows, strict=True):
                ctx.data[key] = r
        for ctx, pi in zip(ctxs, p.tolist(), strict=True):
            ctx.data[PRESCORED] = (model, pi)
        return p

    def score(self, ctx: ScanContext, idx: np.ndarray, val: np.ndarray) -> list[Symbol]:
        model = self.slot.model
        if model is None:
            raise CheckError(self.slot.error or "no model")
        pre = ctx.data.get(PRESCORED)
        p = pre[1] if pre is not None and pre[0] is model else model.proba_row(idx, val)
        thr = self._thresholds
        if thr[0] is not model:  # the model was swapped (promote): read its thresholds once
            thr = self._thresholds = (model, thresholds_of(model), model.ident)
        ident = thr[2]
        ctx.versions["model"] = ident
        ctx.data["classifier.p"] = p
        if self.shadow is not None and self.shadow.model is not None:
            self._shadow(ctx, model, p, idx, val)
        f = factor_for(p, *thr[1])
        if f <= 0.0:
            return []
        return [Symbol(SYMBOL, f, (f"p={p:.4f}", f"model={ident}"))]

    def _shadow(self, ctx: ScanContext, live: LoadedModel, p: float, idx: np.ndarray,
                val: np.ndarray) -> None:
        cand = self.shadow.model if self.shadow is not None else None
        if cand is None:
            return
        try:
            if cand.features.version != live.features.version:
                idx, val = self.features(ctx, cand)
            q = cand.proba_row(idx, val)
        except Exception as exc:  # a shadow never affects the scan
            log.warning("shadow model failed: %s", type(exc).__name__)
            return
        live_spam = p >= live.threshold
        cand_spam = q >= cand.threshold
        agreement = "agree" if live_spam == cand_spam else (
            "shadow_only" if cand_spam else "live_only")
        ctx.versions["shadow_model"] = cand.ident
        ctx.versions["shadow_p"] = f"{q:.4f}"
        SHADOW_SCORED.labels(self.channel.value, agreement).inc()
        if self.events is not None:
            self.events.emit("shadow", None, {
                "message_id": ctx.message.id, "channel": self.channel.value,
                "live": live.ident, "live_p": round(p, 6), "live_spam": live_spam,
                "shadow": cand.ident, "shadow_p": round(q, 6), "shadow_spam": cand_spam,
            })


class SmsClassifierCheck(ClassifierCheck):
    """SMS: cheap enough to run inline (no task per message)."""

    name = "classifier_sms"
    channels = frozenset({Channel.SMS})

    def run(self, ctx: ScanContext) -> list[Symbol]:
        if not ctx.message.text.strip():
            # no content to judge (no training message is empty: the score would be the
            # structure tokens' extrapolation); other checks still see the message
            model = self.slot.model
            if model is None:
                raise CheckError(self.slot.error or "no model")
            ctx.versions["model"] = model.ident
            return []
        idx, val = self.features(ctx)
        return self.score(ctx, idx, val)

    def run_many(self, ctxs: Sequence[ScanContext]) -> list[list[Symbol]]:
        """The check's symbols for many messages, scored in one batch (see `prescore`): the
        batch entry point for an HTTP batch hook. Same symbols as `run` one at a time."""
        self.prescore(ctxs)
        return [self.run(ctx) for ctx in ctxs]


class EmailClassifierCheck(ClassifierCheck):
    """Email: big messages are featurised in a worker thread so the loop never blocks."""

    name = "classifier_email"
    channels = frozenset({Channel.EMAIL})
    timeout = 2.0

    async def run(self, ctx: ScanContext) -> list[Symbol]:
        model = self.slot.model
        if model is not None and ctx.message.size > BIG_TEXT:
            key = _features_key(model)
            if key not in ctx.data:
                fs = model.features
                ctx.data[key] = await asyncio.to_thread(lambda: fs.row(Features.from_context(ctx)))
        idx, val = self.features(ctx, model)
        return self.score(ctx, idx, val)


def _configured(env: Any, channel: Channel) -> Path | None:
    override = env.overrides.get(f"model.{channel.value}")
    if override:
        return Path(override)
    value = getattr(env.settings.model, channel.value, "")
    return Path(value) if value else None


def _shadow_slot(env: Any, channel: Channel) -> ModelSlot | None:
    value = getattr(env.settings.model, f"shadow_{channel.value}", "")
    if not value:
        return None
    return ModelSlot(channel, fixed=Path(value))


def checks(env: Any) -> Sequence[Check]:
    """Entry point `classifier` in `mamori.plugins`: one check per channel."""
    models_dir = env.settings.models_dir()
    out: list[Check] = []
    for channel, cls in ((Channel.SMS, SmsClassifierCheck), (Channel.EMAIL, EmailClassifierCheck)):
        fixed = _configured(env, channel)
        slot = ModelSlot(channel, fixed=fixed, models_dir=None if fixed else models_dir)
        out.append(cls(channel, slot, _shadow_slot(env, channel), env.resources.get("events")))
    return out
