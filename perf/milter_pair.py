"""Two checkouts' milters side by side, driven with the same messages at the same time: the CPU
each spends per message. On a machine shared with others, runs one after the other differ by
+-20% with the neighbours' load; here both servers see the same load, message by message.

    python perf/milter_pair.py --base /tmp/base --limit 1000 --rounds 4

`--base` is another checkout (e.g. `git archive main | tar -x -C /tmp/base`), served with this
venv's Python; "new" is this checkout. Each message goes to one server then the other (the
order alternating), from `--concurrency` clients, over TCP, on uvloop (as `mamori serve`), with
perf/compare's sample of the corpus, offline (empty DNS zone), a null event sink and an
in-memory policy store. The two servers swap their start order every round (the first started
reads slightly higher). Prints each round's CPU per message and whether both answered every
message the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.ingress import milter_codec as mc  # noqa: E402
from gateway.message import split_header_block  # noqa: E402
from perf.milter_bench import load_compare_sample, process_cpu, sender_of  # noqa: E402

SERVER = r'''
import asyncio, gc, logging, sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from gateway.config import load_settings
from gateway.events import NullSink
from gateway.ingress.milter import MilterService
from gateway.runtime import Gateway
from gateway.store.policy import MemoryPolicyStore

async def main() -> None:
    listen, data_dir, zone = sys.argv[1:4]
    s = load_settings(data_dir=Path(data_dir), hash_key="bench-hash-key-0123456789")
    s = s.model_copy(update={
        "milter": s.milter.model_copy(update={"listen": listen, "max_inflight": 64,
                                               "queue_timeout": 30.0}),
        "auth": s.auth.model_copy(update={"zone_file": zone})})
    gw = Gateway.create(s, events=NullSink(), policies=MemoryPolicyStore())
    await gw.start()
    service = MilterService(gw)
    await service.start()
    gc.freeze()  # as mamori serve does
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await service.stop()
    await gw.close()

logging.getLogger("mamori").setLevel(logging.WARNING)
try:
    import uvloop
    factory = uvloop.new_event_loop
except ImportError:
    factory = None
with asyncio.Runner(loop_factory=factory) as runner:
    runner.run(main())
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(root: Path, data: Path, zone: Path) -> tuple[subprocess.Popen[bytes], str]:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, address, str(data), str(zone), str(root)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=data.parent)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        sys.exit(f"the milter of {root} did not start")
    return proc, address


async def one(address: str, raw: bytes, n: int) -> str:
    headers, body = split_header_block(raw)
    client = await mc.MilterClient.open(address)
    try:
        await client.connect("mx.sender.test", "192.0.2.10", 40000 + n, macros={"j": "mx.example.test"})
        res = await client.message(sender_of(headers), ["bench@example.test"], list(headers), body,
                                   helo="mx.sender.test", macros={mc.SMFIC_MAIL: {"i": f"Q{n}"}})
    finally:
        await client.close()
    action = next((v for k, v in res.added_headers if k == "X-Mamori-Action"), None)
    return action or res.reply[:9] or res.final.decode()


async def drive(corpus: list[tuple[str, bytes]], addresses: dict[str, str], concurrency: int
                ) -> dict[str, list[str]]:
    answers: dict[str, list[str]] = {k: [""] * len(corpus) for k in addresses}
    todo = iter(range(len(corpus)))
    order = list(addresses)

    async def client(n: int) -> None:
        for i in todo:
            for side in (order if i % 2 == 0 else order[::-1]):
                answers[side][i] = await one(addresses[side], corpus[i][1], n)

    await asyncio.gather(*(client(n) for n in range(concurrency)))
    return answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="the other checkout")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=100)
    args = ap.parse_args()
    corpus = load_compare_sample(args.limit)
    roots = {"base": args.base.resolve(), "new": ROOT}
    with tempfile.TemporaryDirectory(prefix="mamori-milter-pair-") as tmp:
        zone = Path(tmp) / "zone.yml"
        zone.write_text("zonedata: {}\n")
        for r in range(args.rounds):
            names = ["base", "new"] if r % 2 == 0 else ["new", "base"]
            procs = {k: start(roots[k], Path(tmp) / f"{k}{r}", zone) for k in names}
            try:
                addresses = {k: a for k, (_, a) in procs.items()}
                asyncio.run(drive(corpus[:args.warmup], addresses, args.concurrency))
                c0 = {k: process_cpu(p.pid) for k, (p, _) in procs.items()}
                answers = asyncio.run(drive(corpus, addresses, args.concurrency))
                cpu = {k: process_cpu(p.pid) - c0[k] for k, (p, _) in procs.items()}
            finally:
                for p, _ in procs.values():
                    assert p.stdin is not None
                    p.stdin.close()
                    try:
                        p.wait(60)
                    except subprocess.TimeoutExpired:
                        p.kill()
            n = len(corpus)
            print(f"round {r + 1} (started first: {names[0]}): "
                  f"base {cpu['base'] * 1000 / n:.3f} ms/msg, new {cpu['new'] * 1000 / n:.3f} ms/msg, "
                  f"new/base {cpu['new'] / cpu['base']:.3f}, "
                  f"same answers: {answers['base'] == answers['new']}", flush=True)


if __name__ == "__main__":
    main()
