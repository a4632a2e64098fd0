"""Compare two memory probes of a soak run (tests/soak/memprobe): what grew between them.

    MAMORI_SOAK_SECONDS=180 MAMORI_SOAK_MEMPROBE=/tmp/probe pytest tests/soak
    python perf/soak_memdiff.py /tmp/probe/probe-1 /tmp/probe/probe-2
"""

from __future__ import annotations

import json
import sys
import tracemalloc


def load(probe: str) -> tuple[dict, tracemalloc.Snapshot]:  # type: ignore[type-arg]
    """A probe by its path without suffix: PATH.json and PATH.tracemalloc."""
    with open(f"{probe}.json") as f:
        doc = json.load(f)
    return doc, tracemalloc.Snapshot.load(f"{probe}.tracemalloc")


def main(a_path: str, b_path: str, top: int = 25) -> None:
    (a, snap_a), (b, snap_b) = load(a_path), load(b_path)
    stats = snap_b.compare_to(snap_a, "traceback")
    total = sum(s.size_diff for s in stats)
    print(f"traced growth: {total / 2**20:+.2f} MiB")
    for s in stats[:top]:
        print(f"{s.size_diff / 1024:+10.1f} KiB {s.count_diff:+8d} blocks")
        for line in s.traceback.format()[-8:]:
            print("      " + line)
    print("\nobject counts by type (growth):")
    grown = sorted(((b["types"].get(k, 0) - a["types"].get(k, 0), k) for k in b["types"]), reverse=True)
    for d, k in grown[:top]:
        print(f"{d:+10d} {k}")
    print("\nnative memory (MiB): " + "  ".join(
        f"{k} {a.get('native', {}).get(k, 0) / 2**20:.1f} -> {v / 2**20:.1f}"
        for k, v in b.get("native", {}).items()))
    print("\nlru caches (entries):")
    for k in sorted(b["lru"]):
        print(f"{a['lru'].get(k, 0):10d} -> {b['lru'][k]:10d} {k}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
