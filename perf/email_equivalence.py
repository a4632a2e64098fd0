"""Digests of what the email scan computes, message by message, over the whole SpamAssassin
corpus: the extracted URLs, the classifier's feature row (bit for bit), the parsed Subject and
text parts, and the full verdict (action, score, symbols with scores and options) of every
check including the classifier. Speed work compares two checkouts with it:

    MAMORI_SHARED_DATA=... python perf/email_equivalence.py > /tmp/new.json
    (cd /tmp/base && MAMORI_SHARED_DATA=... PYTHONPATH=. python perf/email_equivalence.py) > /tmp/old.json
    python perf/email_equivalence.py --compare /tmp/old.json /tmp/new.json

Messages are built as the milter builds them (header fields and body, a peer address), and as
`mamori scan` does (raw bytes). Offline as in perf/compare (empty DNS zone). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, default=str).encode()).hexdigest()[:24]


async def run(limit: int | None) -> dict[str, dict[str, str]]:
    from perf.bench import corpus
    from perf.bench.mamori import offline_env

    tmp = Path(tempfile.mkdtemp(prefix="mamori-equiv-"))
    for k, v in offline_env(tmp).items():
        os.environ[k] = v
    os.environ["MAMORI_DATA_DIR"] = str(tmp / "data")
    from gateway.config import load_settings
    from gateway.events import NullSink
    from gateway.learn.features import Features, row
    from gateway.message import Channel, Message, Peer, ScanContext, split_header_block
    from gateway.policy import DEFAULT_POLICY
    from gateway.runtime import Gateway
    from gateway.store.policy import MemoryPolicyStore
    from gateway.urls.extract import extract_urls

    gw = Gateway.create(load_settings(hash_key="equivalence-key-0123456789"), events=NullSink(),
                        policies=MemoryPolicyStore())
    await gw.start()
    out: dict[str, dict[str, str]] = {}
    base = corpus.default_corpus_dir()
    paths = sorted(base.glob("*/*.txt"))[:limit]
    try:
        for path in paths:
            raw = path.read_bytes()
            headers, body = split_header_block(raw)
            as_milter = Message(channel=Channel.EMAIL, sender="sender@example.org",
                                recipients=("user@example.test",), subscriber="user@example.test",
                                headers=headers, body=body, id="m",
                                peer=Peer(ip="192.0.2.10", port=40000, helo="mx.sender.test"))
            as_scan = Message.email(raw, recipients=["user@example.test"], id="s")
            rec: dict[str, str] = {}
            for name, m in (("milter", as_milter), ("scan", as_scan)):
                ctx = ScanContext(m, DEFAULT_POLICY)
                plain, html = ctx.text_parts
                urls = [(u.url, u.source, u.host, u.evasions, u.display_host)
                        for u in extract_urls(plain, html=html)]
                idx, val = row(Features.from_context(ctx))
                rec[f"{name}.text"] = _digest([plain, html, ctx.text,
                                               str(ctx.mime.get("Subject", "") or "")])
                rec[f"{name}.urls"] = _digest(urls)
                rec[f"{name}.row"] = hashlib.sha256(idx.astype("<i8").tobytes()
                                                    + val.astype("<f8").tobytes()).hexdigest()[:24]
                v = await gw.pipeline.scan(m)
                rec[f"{name}.verdict"] = _digest([
                    v.action.value, repr(v.score),
                    sorted((n, repr(s.score), [str(o) for o in s.options])
                           for n, s in v.symbols.items()),
                    list(v.failed_checks), v.reason, list(v.headers)])
            out[str(path.relative_to(base))] = rec
    finally:
        await gw.close()
    return out


def compare(old_path: str, new_path: str) -> int:
    old, new = json.loads(Path(old_path).read_text()), json.loads(Path(new_path).read_text())
    moved = [(p, k) for p in old for k in old[p] if new.get(p, {}).get(k) != old[p][k]]
    missing = sorted(set(old) ^ set(new))
    print(f"{len(old)} messages, {sum(len(r) for r in old.values())} digests; "
          f"{len(moved)} moved, {len(missing)} not in both")
    for p, k in moved[:20]:
        print(f"  moved: {p} {k}")
    return 1 if moved or missing else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="first N messages by path")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = ap.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    sys.stdout.write(json.dumps(asyncio.run(run(args.limit)), indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
