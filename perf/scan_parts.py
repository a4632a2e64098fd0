"""CPU cost of the stages of an email scan, each timed alone over the same sample: MIME parse,
text extraction, URL extraction, and the classifier's featurisation (the row, and its parts).
What `perf/scan_profile.py` measures end to end, taken apart; a stage alone runs warmer in
the caches than inside a scan, so the parts add up to less than the whole.

    python perf/scan_parts.py [--limit 500] [--repeat 5]

Prints CPU microseconds per message, the best of `--repeat` passes after a warm-up pass.
Compare two checkouts by running it from each (`PYTHONPATH=/path/to/base`). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.bench import corpus
from perf.bench.mamori import offline_env


def best_us(f: Callable[[Any], object], items: Sequence[Any], repeat: int) -> float:
    for x in items:  # warm-up
        f(x)
    best = float("inf")
    for _ in range(repeat):
        c = time.process_time()
        for x in items:
            f(x)
        best = min(best, time.process_time() - c)
    return best * 1e6 / max(len(items), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    for k, v in offline_env(Path(tempfile.mkdtemp(prefix="mamori-parts-"))).items():
        os.environ[k] = v
    from gateway.learn import features as f2
    from gateway.message import Message, ScanContext
    from gateway.mime import extract_text, parse_message
    from gateway.policy import DEFAULT_POLICY
    from gateway.urls.extract import extract_urls

    samples = corpus.load(corpus.default_corpus_dir(), args.limit, seed=1)
    msgs = [Message.email(s.raw, recipients=("user@example.test",)) for s in samples]
    raws = [m.raw() for m in msgs]
    parsed = [parse_message(r) for r in raws]
    parts = [extract_text(p) for p in parsed]
    ctxs = [ScanContext(m, DEFAULT_POLICY) for m in msgs]
    for c in ctxs:
        c.urls  # noqa: B018 (extracted once, as the URL check does)
    feats = [f2.Features.from_context(c) for c in ctxs]
    w = f2.EMAIL_BLOCK_WEIGHTS
    texts = [f.text[:f2.MAX_WORD_CHARS] for f in feats]
    t0w = [f2._text0_words(t) for t in texts]
    metas = [f2.meta_tokens(f) for f in feats]
    n = len(msgs)
    stages: list[tuple[str, Callable[[Any], object], Sequence[Any]]] = [
        ("parse_message", parse_message, raws),
        ("extract_text", extract_text, parsed),
        ("extract_urls", lambda p: extract_urls(p[0], html=p[1]), parts),
        ("features row", f2.row, feats),
        ("  _text0_words", f2._text0_words, texts),
        ("  _text_blocks", lambda a: f2._text_blocks(a[1], a[0][:f2.MAX_CHAR_CHARS], w["w"], w["c"]),
         t0w),
        ("  meta_tokens", f2.meta_tokens, feats),
        ("    _url_tokens", lambda f: f2._url_tokens(f.urls, Counter()), feats),
        ("    _text_meta", lambda f: f2._text_meta(f.text, Counter()), feats),
        ("    _email_meta", lambda f: f2._email_meta(f, Counter()), feats),
        ("  _meta_block", lambda m: f2._meta_block(m, w), metas),
    ]
    print(f"{n} messages ({sum(p.is_multipart() for p in parsed)} multipart), "
          f"CPU us per message, best of {args.repeat}:")
    for name, f, items in stages:
        print(f"  {name:16s} {best_us(f, items, args.repeat) * len(items) / n:8.1f}")


if __name__ == "__main__":
    main()
