"""Memory of one gateway replica with a 20-million-entry URL index and both models loaded.

Builds the index file under a temporary MAMORI_DATA_DIR, starts a real `mamori serve`
(HTTP hook + SMTP filter), drives SMS and email traffic through it so the models, the index
pages that lookups touch and the caches are warm, and reads the process's memory from
/proc/PID/smaps_rollup: RSS, PSS, and how much of it is the shared, file-backed index (one copy
in the page cache for every worker process on the machine) versus private memory. A baseline
replica without an index runs first, for the difference.

    python perf/replica_memory.py [--entries 20000000] [--messages 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from gateway.urls.canon import list_expression
from gateway.urls.index import INDEX_NAME, Tag, key_of, urls_dir, write_index

KEY = "replica-memory-bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_index(data_dir: Path, n: int, hosts: list[str]) -> Path:
    path = urls_dir(data_dir) / INDEX_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    real = np.array([key_of(list_expression(h)) for h in hosts], dtype=np.uint64)
    keys[: len(real)] = real
    write_index(path, keys, np.zeros(n, dtype=np.uint16), [Tag("bench", "block", "")],
                {"generation": 1})
    return path


def smaps(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                out["VmHWM"] = int(line.split()[1]) * 1024
    return out


def index_mapping(pid: int, index: Path | None) -> dict[str, int]:
    """Rss/Pss of the index file's own mapping, from /proc/PID/smaps."""
    if index is None:
        return {}
    out: dict[str, int] = {}
    inside = False
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            if "-" in line.split(" ", 1)[0] and len(line.split()) >= 5:
                inside = line.rstrip().endswith(str(index))
                continue
            if inside:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = out.get(parts[0].rstrip(":"), 0) + int(parts[1]) * 1024
    return out


def traffic(api: int, smtp: int, n: int, hosts: list[str]) -> None:
    rnd = random.Random(3)
    texts = ["Meeting moved to 3pm", "お疲れさまです。明日の予定を確認してください。",
             "Your code is 482913", "Amazonアカウント停止 https://amazon-77-secure.xyz/verify"]
    batch = []
    for i in range(n):
        t = rnd.choice(texts) if i % 3 else f"【重要】確認 https://{rnd.choice(hosts)}/login?id={i}"
        if i % 7 == 0:
            t = f"see https://{rnd.getrandbits(40):x}.example/{i}"  # a lookup that misses
        batch.append({"sender": "+819011112222", "recipient": f"+8190{i % 500:08d}", "text": t})
    for i in range(0, n, 200):
        req = urllib.request.Request(
            f"http://127.0.0.1:{api}/v1/sms/check-batch", data=json.dumps(batch[i:i + 200]).encode(),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status == 200
    corpus = Path(os.environ.get("MAMORI_SHARED_DATA", "../shared/data")) / "email" / "spamassassin"
    files = sorted((corpus / "easy-ham-1").iterdir())[:100] + sorted((corpus / "spam-1").iterdir())[:100]
    with smtplib.SMTP("127.0.0.1", smtp, timeout=60) as s:
        for f in files:
            try:
                s.sendmail("a@example.org", ["b@example.test"], f.read_bytes())
            except smtplib.SMTPException:
                s.rset()  # refused or no next hop: the scan happened, which is what we need


def replica(data_dir: Path, messages: int, hosts: list[str], index: Path | None) -> dict[str, int]:
    api, smtp = free_port(), free_port()
    env = {**os.environ, "MAMORI_DATA_DIR": str(data_dir), "MAMORI_API__LISTEN": f"127.0.0.1:{api}",
           "MAMORI_SMTP__LISTEN": f"127.0.0.1:{smtp}", "MAMORI_SMTP__NEXT_HOP": "127.0.0.1:9",
           "MAMORI_API__KEYS": json.dumps({KEY: ["sms:check"]}), "MAMORI_API__RATE_LIMIT": "1000000",
           "MAMORI_API__RATE_BURST": "1000000", "MAMORI_LOG_LEVEL": "WARNING",
           "MAMORI_HASH_KEY": "replica-memory-bench-hash-key"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api}/readyz", timeout=2) as r:
                    checks = json.loads(r.read())["checks"]
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("the replica did not become ready")
        assert {"classifier_sms", "classifier_email", "urls"} <= set(checks), checks
        traffic(api, smtp, messages, hosts)
        mem = smaps(proc.pid)
        mem.update({f"index_{k}": v for k, v in index_mapping(proc.pid, index).items()})
        return mem
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=20_000_000)
    ap.add_argument("--messages", type=int, default=3000)
    args = ap.parse_args()
    hosts = ["".join(random.Random(i).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(9)) + ".top"
             for i in range(2000)]
    mb = 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="mamori-mem-") as tmp:
        base = replica(Path(tmp) / "base", args.messages, hosts, None)
        t0 = time.process_time()
        index = build_index(Path(tmp) / "full", args.entries, hosts)
        print(f"index: {args.entries:,} entries, {index.stat().st_size / mb:,.0f} MiB file "
              f"({index.stat().st_size / args.entries:.2f} bytes/entry), built in "
              f"{time.process_time() - t0:.0f} s CPU")
        full = replica(Path(tmp) / "full", args.messages, hosts, index)
    print(f"{'replica':<34} {'RSS':>8} {'PSS':>8} {'private':>8} {'shared':>8} {'peak RSS':>9}")
    for name, m in (("both models, no URL index", base), (f"both models, {args.entries:,} URLs", full)):
        private = m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
        shared = m.get("Shared_Clean", 0) + m.get("Shared_Dirty", 0)
        print(f"{name:<34} {m['Rss'] / mb:>7.0f}M {m['Pss'] / mb:>7.0f}M {private / mb:>7.0f}M "
              f"{shared / mb:>7.0f}M {m['VmHWM'] / mb:>8.0f}M")
    if "index_Rss" in full:
        print(f"of which the URL index mapping: RSS {full['index_Rss'] / mb:.0f}M (file-backed, "
              f"shared by every worker process; the kernel may drop and re-read these pages)")
    print(f"difference in RSS for the index: {(full['Rss'] - base['Rss']) / mb:+.0f}M")


if __name__ == "__main__":
    main()
