"""Shadow mode summaries: what a candidate model would have done on live traffic.

The classifier check (gateway/checks/classifier.py) emits one event per message on the
`shadow` stream when a shadow model is configured (`MAMORI_MODEL__SHADOW_SMS` /
`MAMORI_MODEL__SHADOW_EMAIL`). `mamori model compare --shadow FILE` reads those events
(the file sink writes MAMORI_DATA_DIR/events/shadow.jsonl) and summarises the agreement.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import InputError


def summarise(path: Path | str) -> str:
    p = Path(path)
    try:
        lines = p.read_bytes().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror}") from None
    pairs: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"n": 0, "both": 0, "live_only": 0, "shadow_only": 0, "dp": 0.0})
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            ev = orjson.loads(line)
            key = (str(ev["channel"]), str(ev["live"]), str(ev["shadow"]))
            ls, ss = bool(ev["live_spam"]), bool(ev["shadow_spam"])
            dp = float(ev["shadow_p"]) - float(ev["live_p"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1
            continue
        s = pairs[key]
        s["n"] += 1
        s["both"] += int(ls and ss)
        s["live_only"] += int(ls and not ss)
        s["shadow_only"] += int(ss and not ls)
        s["dp"] += dp
    if not pairs:
        raise InputError(f"{p}: no shadow events")
    out = ["| channel | live | shadow | messages | flagged by both | live only | shadow only "
           "| agreement | mean p(shadow) - p(live) |", "|---|---|---|---|---|---|---|---|---|"]
    for (ch, live, shadow), s in sorted(pairs.items()):
        agree = 1 - (s["live_only"] + s["shadow_only"]) / s["n"]
        out.append(f"| {ch} | {live} | {shadow} | {s['n']} | {s['both']} | {s['live_only']} | "
                   f"{s['shadow_only']} | {agree:.2%} | {s['dp'] / s['n']:+.4f} |")
    if bad:
        out.append(f"\n{bad} malformed events skipped")
    return "\n".join(out)
