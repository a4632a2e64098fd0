"""Digests of one feature version's row (indices and values, bit for bit) for every message of
an email corpus, for speed work on a feature set: run it on two checkouts and compare.

    cd /tmp/base && PYTHONPATH=. MAMORI_SHARED_DATA=... python /path/to/perf/feature_rows.py \
        --features e3 --corpus trec07p_early > /tmp/old.json
    PYTHONPATH=. MAMORI_SHARED_DATA=... python perf/feature_rows.py --features e3 \
        --corpus trec07p_early > /tmp/new.json
    python perf/feature_rows.py --compare /tmp/old.json /tmp/new.json

The `gateway` package is the one on the import path (PYTHONPATH), so one copy of this script
digests any checkout; the output names the package it read. Corpora under
$MAMORI_SHARED_DATA/email: ``spamassassin`` (every ``*/*.txt``) or a TREC-style one (its
``index``). Each message is featurised as `mamori scan` builds it (raw bytes) and as the
milter does (header fields and body, an envelope sender). Prints JSON; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path


def _paths(corpus: Path, limit: int | None) -> list[Path]:
    index = corpus / "index"
    if index.is_file():
        paths = [corpus / line.split()[1] for line in index.read_text().splitlines()
                 if line.strip()]
    else:
        paths = sorted(corpus.glob("*/*.txt"))
    return paths[:limit]


def run(version: str, corpus: Path, limit: int | None) -> dict[str, object]:
    import gateway
    from gateway.learn.features import Features
    from gateway.learn.featuresets import SETS
    from gateway.message import Channel, Message, ScanContext, split_header_block
    from gateway.policy import DEFAULT_POLICY

    row = SETS[version].row
    out: dict[str, str] = {}
    for path in _paths(corpus, limit):
        raw = path.read_bytes()
        headers, body = split_header_block(raw)
        as_milter = Message(channel=Channel.EMAIL, sender="sender@example.org",
                            recipients=("user@example.test",), subscriber="user@example.test",
                            headers=headers, body=body, id="m")
        h = hashlib.sha256()
        for m in (Message.email(raw, recipients=["user@example.test"], id="s"), as_milter):
            idx, val = row(Features.from_context(ScanContext(m, DEFAULT_POLICY)))
            h.update(idx.astype("<i8").tobytes())
            h.update(b"|")
            h.update(val.astype("<f8").tobytes())
            h.update(b"#")
        out[str(path.relative_to(corpus))] = h.hexdigest()[:32]
    return {"package": str(Path(gateway.__file__).parent), "features": version, "rows": out}


def compare(old_path: str, new_path: str) -> int:
    old, new = json.loads(Path(old_path).read_text()), json.loads(Path(new_path).read_text())
    o, n = old["rows"], new["rows"]
    moved = [p for p in o if n.get(p) != o[p]]
    missing = sorted(set(o) ^ set(n))
    print(f"{old['features']}: {len(o)} messages ({old['package']} vs {new['package']}); "
          f"{len(moved)} moved, {len(missing)} not in both")
    for p in moved[:20]:
        print(f"  moved: {p}")
    return 1 if moved or missing or old["features"] != new["features"] else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", default="e3", help="feature version (default e3)")
    ap.add_argument("--corpus", default="spamassassin",
                    help="a corpus under $MAMORI_SHARED_DATA/email (default spamassassin)")
    ap.add_argument("--limit", type=int, default=None, help="first N messages")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = ap.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    corpus = Path(os.environ["MAMORI_SHARED_DATA"]) / "email" / args.corpus
    sys.stdout.write(json.dumps(run(args.features, corpus, args.limit), indent=0,
                                sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
