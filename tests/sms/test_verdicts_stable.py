"""The SMS speed work must not change a verdict.

`data/verdict_digests.json` holds the digests of the verdicts of a fixed SMS sample (see
`verdict_digest.py`: action, score, reason, policy version, model, symbols with scores and
options), computed by the code before the speed work (commit a8b207a) with the shipped model
sms-linear 1.1.0. The same sample scanned now, one message at a time and as one batch, must
give the same digests in the same order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .verdict_digest import verdicts

EXPECTED = Path(__file__).parent / "data" / "verdict_digests.json"


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batch"])
async def test_verdicts_are_unchanged(shared_data: Path, tmp_path: Path, batch: bool) -> None:
    expected = json.loads(EXPECTED.read_text())
    got = await verdicts(shared_data, tmp_path, batch=batch)
    assert len(got) == len(expected) == 460
    moved = [i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b]
    assert moved == []
