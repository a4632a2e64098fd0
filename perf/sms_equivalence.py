"""Digests of everything the SMS judging gives, to compare two checkouts ("the same verdicts").

    python perf/sms_equivalence.py                          # this checkout
    PYTHONPATH=/tmp/base python /tmp/base/perf/sms_equivalence.py   # another (run from there)

Judges, with `Gateway.process_many` in batches of 1, 2, 3 and 16, the SMS benchmark's mix
(perf/sms_judge_bench.py, 2,000 messages, new parties each), the verdict-digest sample of
tests/sms/verdict_digest.py (UCI corpus, stricter and switched-off policies, 460 messages) and
1,500 benchmark messages among 13 senders and 97 recipients (flood, burst and the policies
trip), with fixed hash and flood keys. Prints per batch size a digest of the verdicts (what
tests/sms/verdict_digest.py keeps of each: action, score, reason, policy and model versions,
symbols with scores and options) and of the events emitted (without message ids, times and
elapsed times), and a digest of the s3 feature rows of every SMS text of the shared data
(`row` and `rows_concat` at 3, 7 and 50). Equal lines: the same judging. Asserts nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sms_judge_bench import texts

from tests.conftest import shared_data_dir
from tests.sms.verdict_digest import MODEL, digest, policies, sample


async def verdicts(batch: int, data: Path) -> str:
    from gateway.config import load_settings
    from gateway.events import MemorySink
    from gateway.message import Message
    from gateway.runtime import Gateway
    from gateway.store.policy import MemoryPolicyStore

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp), hash_key="verdict-digest-key-0123", model={"sms": str(MODEL)},
            sms={"flood_recipients": 5, "burst_recipients": 8, "flood_window": 1e7},
            urls={"expand_shorteners": False})
        store = MemoryPolicyStore()
        for p in policies().values():
            await store.put(p)
        sink = MemorySink()
        gw = Gateway.create(settings, events=sink, policies=store)
        await gw.start()
        try:
            msgs = [Message.sms(t, sender=s, recipient=d, protocol=p)
                    for t, s, d, p in texts(2000, 7)]
            msgs += [Message.sms(text, sender=sender, recipient=rcpt,
                                 protocol={"ton": ton, "system_id": "esme1"} if ton else {})
                     for text, sender, ton, rcpt in sample(data)]
            msgs += [Message.sms(t, sender=f"+8190{i % 13:08d}", recipient=f"+8180{i % 97:08d}",
                                 protocol=p)
                     for i, (t, _s, _d, p) in enumerate(texts(1500, 9))]
            h = hashlib.sha256()
            for k in range(0, len(msgs), batch):
                for v in await gw.process_many(msgs[k:k + batch], "smpp"):
                    h.update(digest(v).encode())
            ev = hashlib.sha256()
            for stream, key, e in sink.events:
                shown = {k: v for k, v in e.items() if k not in ("message_id", "elapsed_ms", "time")}
                ev.update(orjson.dumps([stream, key, shown], option=orjson.OPT_SORT_KEYS,
                                       default=str))
        finally:
            await gw.close()
    return (f"batch {batch:2d}: {len(msgs)} verdicts {h.hexdigest()[:16]}, "
            f"{len(sink.events)} events {ev.hexdigest()[:16]}")


def s3_rows(data: Path) -> list[str]:
    from gateway.learn import features_sms as s3
    from gateway.learn.features import Features, _find_urls
    from gateway.message import Channel

    found: list[str] = []
    for ln in (data / "sms" / "uci_sms_spam_train.tsv").read_text("utf-8").splitlines():
        if "\t" in ln:
            found.append(ln.split("\t", 1)[1])
    for ln in (data / "ja" / "ja_messages_dev.jsonl").read_text("utf-8").splitlines():
        found.append(str(json.loads(ln).get("text") or ""))
    found += ["", " ", "a", "ab", "abc", "http://X.COM", "www.a.com:80/x",
              "\uff21\uff22\uff23\uff11\uff12\uff13 http://\u4f8b\u3048.jp/x", "\x00\x01 http://a.b/c?d#e"]
    senders = ["+819012345678", "MyBank", "12345", "", "0901234567"]
    fs = [Features(Channel.SMS, t, sender=senders[i % 5], urls=tuple(_find_urls(t)))
          for i, t in enumerate(found)]
    out = []
    h = hashlib.sha256()
    for f in fs:
        idx, val = s3.row(f)
        h.update(idx.tobytes())
        h.update(val.tobytes())
    out.append(f"s3 row: {len(fs)} texts {h.hexdigest()[:16]}")
    for b in (3, 7, 50):
        h = hashlib.sha256()
        for k in range(0, len(fs), b):
            idx, val, n = s3.rows_concat(fs[k:k + b])
            h.update(idx.tobytes())
            h.update(val.tobytes())
            h.update(repr(n).encode())
        out.append(f"s3 rows_concat by {b}: {h.hexdigest()[:16]}")
    return out


def main() -> None:
    logging.disable(logging.INFO)
    data = shared_data_dir()
    for line in s3_rows(data):
        print(line)
    for batch in (1, 2, 3, 16):
        print(asyncio.run(verdicts(batch, data)))


if __name__ == "__main__":
    main()
