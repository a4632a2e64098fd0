"""The shipped models depend on the exact features: speed work must not change them.

`data/feature_digests.json` holds, for a fixed sample of 300 corpus messages, digests of the
classifier's feature row (bit for bit) and of the extracted URLs, computed by the code before
the performance work (commit 8e2c20c). Any change of featurisation or URL extraction shows
here as the messages whose digest moved."""

from __future__ import annotations

import json
from pathlib import Path

from tests.digests import moved

from .feature_digest import digests


def test_features_and_urls_are_unchanged(shared_data: Path) -> None:
    corpus = shared_data / "email" / "spamassassin"
    expected = json.loads((Path(__file__).parent / "data" / "feature_digests.json").read_text())
    got = digests(corpus)
    assert len(got) == len(expected) == 300
    assert moved(expected, got) == []
