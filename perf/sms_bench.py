"""SMS benchmark: SMS/s and added latency (p50/p99) through the SMPP proxy and the HTTP hook.

    python perf/sms_bench.py [--seconds 3] [--binds 1,10,100] [--window 10] [--http]
                             [--rate 1000,2000] [--loop asyncio|uvloop|auto] [--batches]
                             [--proxy-only]

Layout (all on 127.0.0.1): a load generator process (raw SMPP ESMEs on our codec, or HTTP
clients) -> mamori in this process (one core: the proxy and the full SMS pipeline with the
registered checks) -> a sink SMSC in a third process. The same load is first run straight
against the SMSC: "added" latency is the difference of the percentiles. The mix is realistic:
ham, fraud with URLs from unknown senders, long 3-part GSM messages, 2-part Japanese UCS-2.
"PDU/CPU-s" divides the PDUs answered by the CPU seconds the mamori process used: the
per-core rate, which holds on a shared machine where wall-clock rates measure the neighbours.
`--rate` adds paced rows: the messages offered at a fixed rate (below saturation) at the first
bind count, so "added" latency is the proxy's own delay, not the queue of the bench's window.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import os
import random
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib
import gc

from gateway.ingress import smpp_pdu as P
from gateway.sms.encoding import concat_udh

HAM = ["Running late, see you at 7", "Can you pick up milk on the way home?",
       "Meeting moved to 3pm, room B", "Happy birthday! Dinner on Saturday?"]
FRAUD = ["Your parcel is held. Pay the fee: https://sagawa-delivery.example/p?{}",
         "[MyBank] Your card is locked. Verify now https://mybank-secure.example/{}"]
JP = ("【重要】お客様のアカウントで不審なログインを検知しました。以下のリンクから本人確認を"
      "お願いいたします。確認がない場合はご利用を制限させていただきます。")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


# -- the mix ------------------------------------------------------------------------------


# --pin: mamori's process on a core of its own (as in production), the load generator and the
# sink SMSC on the others; the peers read their CPUs from this variable (spawned processes)
PEER_CPUS_ENV = "MAMORI_BENCH_PEER_CPUS"


def pin_peer() -> None:
    """In a load generator or sink process: run on the peers' CPUs when --pin chose them."""
    cpus = os.environ.get(PEER_CPUS_ENV)
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})


def runq_wait() -> float:
    """Seconds this process's threads have spent runnable but waiting for a CPU (schedstat):
    the share of a row's time mamori was held up by others (the load generator, the sink,
    the neighbours), not by its own work."""
    total = 0
    for t in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{t}/schedstat") as f:
            total += int(f.read().split()[1])
    return total / 1e9


def mix_messages(n: int, seed: int) -> list[list[bytes]]:
    """n logical messages, each a list of submit_sm bodies (parts)."""
    rnd = random.Random(seed)
    out: list[list[bytes]] = []
    ref = itertools.count(1)

    def body(text: bytes, src: str, dst: str, dc: int = 0, esm: int = 0, ton: int = 1) -> bytes:
        return P.encode_short_message(P.ShortMessage(
            source_addr_ton=ton, source_addr_npi=1, source_addr=src, dest_addr_ton=1,
            dest_addr_npi=1, destination_addr=dst, esm_class=esm, data_coding=dc,
            short_message=text))

    for i in range(n):
        dst = f"+8180{rnd.randrange(10**8):08d}"
        src = f"+8190{rnd.randrange(10**8):08d}"
        kind = rnd.random()
        if kind < 0.55:
            out.append([body(rnd.choice(HAM).encode(), src, dst)])
        elif kind < 0.80:
            out.append([body(rnd.choice(FRAUD).format(i).encode(), src, dst)])
        elif kind < 0.90:  # long GSM, 3 parts
            r = next(ref) & 0xFF
            parts = [(b"Part %d of a long newsletter message " % k) * 3 for k in (1, 2, 3)]
            out.append([body(concat_udh(r, 3, k + 1) + p[:150], src, dst, esm=P.ESM_UDHI)
                        for k, p in enumerate(parts)])
        else:  # Japanese UCS-2, 2 parts
            r = next(ref) & 0xFF
            raw = JP.encode("utf-16-be")
            chunks = [raw[j:j + 134] for j in range(0, len(raw), 134)]
            out.append([body(concat_udh(r, len(chunks), k + 1) + c, src, dst, dc=8,
                             esm=P.ESM_UDHI) for k, c in enumerate(chunks)])
    return out


# -- sink SMSC (separate process) ----------------------------------------------------------


def run_sink(port: int) -> None:
    pin_peer()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ids = itertools.count(1)
        dec = P.FrameDecoder()
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                out = []
                for pdu in dec.feed(data):
                    cid = pdu.command_id
                    if cid in P.BIND_COMMANDS:
                        out.append(P.encode(cid | P.RESP_BIT, pdu.sequence, b"sink\0"))
                    elif cid == P.SUBMIT_SM:
                        out.append(P.encode(P.SUBMIT_SM_RESP, pdu.sequence,
                                            b"s%d\0" % next(ids)))
                    elif cid in (P.ENQUIRE_LINK, P.UNBIND):
                        out.append(P.encode(cid | P.RESP_BIT, pdu.sequence))
                if out:
                    w.write(b"".join(out))
        except ConnectionError:
            pass
        finally:
            w.close()

    async def main() -> None:
        srv = await asyncio.start_server(handle, "127.0.0.1", port)
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


# -- SMPP load generator (separate process) -------------------------------------------------


def run_smpp_load(port: int, binds: int, window: int, seconds: float, q: Any,
                  rate: float = 0.0) -> None:
    """rate > 0: paced, each bind offers rate/binds messages/s (all parts of a message back to
    back, as an ESME sends them), starting at scheduled times; 0: as fast as the window allows."""
    pin_peer()

    async def esme(idx: int, msgs: list[list[bytes]], lat: list[float], count: list[int],
                   stop_at: float) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        seq = itertools.count(1)
        w.write(P.encode(P.BIND_TRANSMITTER, next(seq), P.encode_bind(P.Bind("bench", "bench"))))
        dec = P.FrameDecoder()
        while True:
            pdus = dec.feed(await r.read(4096))
            if pdus:
                break
        sent: dict[int, float] = {}
        inflight = asyncio.Semaphore(window)
        done = asyncio.Event()

        async def reader() -> None:
            while not done.is_set() or sent:
                data = await r.read(65536)
                if not data:
                    return
                now = time.perf_counter()
                for pdu in dec.feed(data):
                    t = sent.pop(pdu.sequence, None)
                    if t is not None:
                        lat.append(now - t)
                        if pdu.status == P.ESME_ROK or pdu.status >= 0x100 or pdu.status == 0x45:
                            count[0] += 1
                        else:
                            count[1] += 1
                        inflight.release()
                if done.is_set() and not sent:
                    return

        rt = asyncio.create_task(reader())
        interval = binds / rate if rate > 0 else 0.0
        # binds start spread over one interval, not all at the same instant
        next_at = time.perf_counter() + interval * idx / binds
        for parts in itertools.cycle(msgs):
            if time.perf_counter() >= stop_at:
                break
            if interval:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
            for body in parts:
                await inflight.acquire()
                s = next(seq)
                sent[s] = time.perf_counter()
                w.write(P.encode(P.SUBMIT_SM, s, body))
        done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rt, 10)
        w.write(P.encode(P.UNBIND, next(seq)))
        w.close()

    async def main() -> None:
        # per bind: distinct recipients (policy cache misses) and concatenation references
        mixes = [mix_messages(max(20_000 // binds, 400), 1000 * binds + i) for i in range(binds)]
        lat: list[float] = []
        count = [0, 0]
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(esme(i, mixes[i], lat, count, stop_at) for i in range(binds)))
        q.put({"elapsed": time.perf_counter() - start, "lat": lat, "ok": count[0],
               "err": count[1]})

    asyncio.run(main())


async def smpp_round(target_port: int, binds: int, window: int, seconds: float,
                     rate: float = 0.0) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=run_smpp_load, args=(target_port, binds, window, seconds, q, rate))
    p.start()
    res = await asyncio.to_thread(q.get)
    await asyncio.to_thread(p.join)
    return dict(res)


# -- HTTP load generator --------------------------------------------------------------------


def run_http_load(port: int, conns: int, batch: int, seconds: float, q: Any,
                  client: str = "httpx") -> None:
    pin_peer()
    texts = HAM + [f.format(i) for f in FRAUD for i in range(3)] + [JP]
    rnd = random.Random(3)
    if client == "raw":
        run_raw_http_load(port, conns, batch, seconds, q, texts, rnd)
        return
    import httpx

    async def worker(client: httpx.AsyncClient, lat: list[float], count: list[int],
                     stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            items = [{"sender": f"+8190{rnd.randrange(10**8):08d}",
                      "recipient": f"+8180{rnd.randrange(10**8):08d}",
                      "text": rnd.choice(texts)} for _ in range(batch)]
            t = time.perf_counter()
            try:
                if batch == 1:
                    r = await client.post("/v1/sms/check", json=items[0])
                else:
                    r = await client.post("/v1/sms/check-batch", json=items)
            except httpx.HTTPError:  # counted, not fatal (the round would never report)
                count[1] += batch
                continue
            lat.append(time.perf_counter() - t)
            if r.status_code == 200:
                count[0] += batch
            else:
                count[1] += batch

    async def main() -> None:
        lat: list[float] = []
        count = [0, 0]
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                     headers={"Authorization": "Bearer bench"},
                                     timeout=30) as client:
            start = time.perf_counter()
            await asyncio.gather(*(worker(client, lat, count, start + seconds)
                                   for _ in range(conns)))
            q.put({"elapsed": time.perf_counter() - start, "lat": lat, "ok": count[0],
                   "err": count[1]})

    asyncio.run(main())


def run_raw_http_load(port: int, conns: int, batch: int, seconds: float, q: Any,
                      texts: list[str], rnd: random.Random) -> None:
    """The same requests as the httpx client, written by hand on keep-alive connections
    (one request in flight per connection): a client cheap enough to saturate the server."""
    import json

    path = b"/v1/sms/check" if batch == 1 else b"/v1/sms/check-batch"

    def request() -> bytes:
        items = [{"sender": f"+8190{rnd.randrange(10**8):08d}",
                  "recipient": f"+8180{rnd.randrange(10**8):08d}",
                  "text": rnd.choice(texts)} for _ in range(batch)]
        body = json.dumps(items[0] if batch == 1 else items).encode()
        return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bench\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (path, len(body), body))

    reqs = [request() for _ in range(max(2000 // batch, 50))]

    async def worker(idx: int, lat: list[float], count: list[int], stop_at: float) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        for i in itertools.count(idx * 7):
            if time.perf_counter() >= stop_at:
                break
            t = time.perf_counter()
            w.write(reqs[i % len(reqs)])
            head = await r.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await r.readexactly(length)
            lat.append(time.perf_counter() - t)
            if head[9:12] == b"200":
                count[0] += batch
            else:
                count[1] += batch
        w.close()

    async def main() -> None:
        lat: list[float] = []
        count = [0, 0]
        start = time.perf_counter()
        await asyncio.gather(*(worker(i, lat, count, start + seconds) for i in range(conns)))
        q.put({"elapsed": time.perf_counter() - start, "lat": lat, "ok": count[0],
               "err": count[1]})

    asyncio.run(main())


async def http_round(port: int, conns: int, batch: int, seconds: float,
                     client: str = "httpx") -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=run_http_load, args=(port, conns, batch, seconds, q, client))
    p.start()
    res = await asyncio.to_thread(q.get)
    await asyncio.to_thread(p.join)
    return dict(res)


# -- main ---------------------------------------------------------------------------------------


def row(label: str, res: dict[str, Any], base: dict[str, Any] | None, unit: str,
        cpu: float | None = None, waited: float | None = None) -> str:
    lat = res["lat"]
    p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
    rate = res["ok"] / res["elapsed"]
    added = ""
    if base is not None:
        added = (f"  added p50 {p50 - pct(base['lat'], 50) * 1000:6.2f} ms"
                 f"  p99 {p99 - pct(base['lat'], 99) * 1000:6.2f} ms")
    per_core = f"  {res['ok'] / cpu:7.0f} {unit}/CPU-s" if cpu else ""
    # the share of the row mamori's threads were ready to run but had no CPU
    wait = f"  runq-wait {100 * waited / res['elapsed']:4.1f}%" if waited is not None else ""
    return (f"{label:<34} {rate:7.0f} {unit}/s{per_core}  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
            f"{added}  errors {res['err']}{wait}")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--binds", default="1,10,100")
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--rate", default="",
                    help="paced rows below saturation: offered messages/s, comma separated "
                         "(e.g. 1000,2000), at the first --binds count and --window")
    ap.add_argument("--http", action="store_true", help="also benchmark the HTTP hook")
    ap.add_argument("--no-smpp", action="store_true")
    ap.add_argument("--http-batch", default="1,100",
                    help="HTTP rows: 1 is /v1/sms/check, N > 1 /v1/sms/check-batch of N "
                         "(comma separated)")
    ap.add_argument("--http-client", choices=("httpx", "raw"), default="httpx",
                    help="load generator of the HTTP rows: httpx, or raw HTTP/1.1 on "
                         "keep-alive sockets (cheap enough to saturate the server)")
    ap.add_argument("--no-gc-freeze", action="store_true",
                    help="keep the start-up objects in the collector's generations")
    ap.add_argument("--memory-policies", action="store_true",
                    help="in-memory policy store: the ceiling without SQLite look-ups")
    ap.add_argument("--loop", choices=["asyncio", "uvloop", "auto"],
                    help="event loop of the proxy (default: MAMORI_EVENT_LOOP, else auto, as "
                         "`mamori serve`: uvloop when installed)")
    ap.add_argument("--uvloop", action="store_true", help="the same as --loop uvloop")
    ap.add_argument("--batches", action="store_true",
                    help="after each SMPP row through mamori, the sizes of the judged batches")
    ap.add_argument("--batch-wait", type=float, default=0.0,
                    help="MAMORI_SMPP__BATCH_WAIT of the proxy (seconds; default 0)")
    ap.add_argument("--pin", choices=("auto", "off"), default="auto",
                    help="auto: with 2 or more CPUs, mamori's process on the first CPU alone and "
                         "the load generator and sink SMSC on the others (a proxy has its "
                         "cores to itself in production); off: the scheduler places all")
    ap.add_argument("--proxy-only", action="store_true",
                    help="accept every message without judging it: the CPU of the proxy itself "
                         "(sockets, PDUs, sessions, batching, forwarding), not of the checks")
    args = ap.parse_args()
    if args.uvloop:
        args.loop = "uvloop"
    # the loop the proxy runs on: as `mamori serve` chooses it (MAMORI_EVENT_LOOP, else auto:
    # uvloop when installed). Rows in perf/RESULTS.md before 2026-11-26 21:50 UTC ran on
    # asyncio's loop unless they say otherwise (`--loop asyncio` repeats them)
    args.loop = args.loop or os.environ.get("MAMORI_EVENT_LOOP", "auto")
    return args


async def main(args: argparse.Namespace) -> None:

    import logging

    logging.disable(logging.INFO)  # one verdict line per SMS would measure the terminal
    os.environ.pop("MAMORI_REDIS__URL", None)
    from gateway.api import server as api_server
    from gateway.config import load_settings
    from gateway.ingress.smpp import SmppProxy
    from gateway.runtime import Gateway

    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.pin == "auto" and len(cpus) >= 2
    if pinned:  # before any thread of mamori starts: they inherit the CPU
        os.environ[PEER_CPUS_ENV] = ",".join(str(c) for c in cpus[1:])
        os.sched_setaffinity(0, {cpus[0]})
    sink_port, proxy_port, api_port = free_port(), free_port(), free_port()
    ctx = mp.get_context("spawn")
    sink = ctx.Process(target=run_sink, args=(sink_port,), daemon=True)
    sink.start()
    await asyncio.sleep(0.5)
    tmp = tempfile.mkdtemp(prefix="mamori-bench-")
    settings = load_settings(
        data_dir=Path(tmp), hash_key="bench-hash-key-0123456789",
        smpp={"listen": f"127.0.0.1:{proxy_port}", "upstream": f"127.0.0.1:{sink_port}",
              "accounts": {"bench": "bench"}, "window": 1000, "batch_wait": args.batch_wait,
              # 100 binds of one account: the per-account bind limit is the operator's choice
              "max_binds": 1000},
        # the caller is the carrier's own SMS router: its rate limit is the operator's choice
        api={"listen": f"127.0.0.1:{api_port}", "keys": {"bench": ["sms:check"]},
             "rate_limit": 1e9, "rate_burst": 10**9},
        # floods would fire on a benchmark's repeated texts; counted, not acted on
        sms={"flood_recipients": 10**9, "burst_recipients": 10**9})
    if args.memory_policies:
        from gateway.store.policy import MemoryPolicyStore

        gw = Gateway.create(settings, policies=MemoryPolicyStore())
    else:
        gw = Gateway.create(settings)
    await gw.start()
    proxy = SmppProxy(gw, settings.smpp)
    await proxy.start()
    if not args.no_gc_freeze:
        gc.freeze()  # as `mamori serve` does once it serves (gateway/serve.py)
    binds = [int(b) for b in args.binds.split(",") if b]
    print(f"mamori SMS benchmark: {args.seconds:.0f} s per row, window {args.window}, "
          f"checks {[c.name for c in gw.pipeline.checks]}, policy store "
          f"{type(gw.policies).__name__}, event loop "
          f"{type(asyncio.get_running_loop()).__module__.split('.')[0]}, "
          f"batch wait {args.batch_wait * 1000:g} ms, "
          + (f"mamori pinned to CPU {cpus[0]}, load generator and sink on CPU "
             f"{os.environ[PEER_CPUS_ENV]}" if pinned else "not pinned"))
    if args.proxy_only:
        from gateway.verdict import Action, Verdict

        async def accept_all(msgs: Any, ingress: str, on_verdict: Any = None) -> Any:
            out = [Verdict(m.id, "sms", Action.ACCEPT, 0.0, {}) for m in msgs]
            if on_verdict is not None:
                for i, v in enumerate(out):
                    on_verdict(i, v)
            return out

        gw.process_many = accept_all  # type: ignore[method-assign]
        print("--proxy-only: every message accepted without judging")
    sizes: list[int] = []
    if args.batches:
        real_many = gw.process_many

        async def counted(msgs: Any, ingress: str, **kw: Any) -> Any:
            sizes.append(len(msgs))
            return await real_many(msgs, ingress, **kw)

        gw.process_many = counted  # type: ignore[method-assign]

    def batches() -> None:
        if args.batches and sizes:
            xs = sorted(sizes)
            print(f"{'':<36}judged in {len(xs)} batches: mean {sum(xs) / len(xs):.1f}, "
                  f"median {xs[len(xs) // 2]}, max {xs[-1]} messages")
        sizes.clear()

    try:
        if not args.no_smpp:
            print("SMPP (submit_sm parts; mix: 55% ham, 25% fraud+URL, 10% 3-part GSM, "
                  "10% 2-part UCS-2)")
            for n in binds:
                base = await smpp_round(sink_port, n, args.window, args.seconds)
                print(row(f"  direct to SMSC, {n} binds", base, None, "PDU"))
                sizes.clear()
                c0, w0 = time.process_time(), runq_wait()
                res = await smpp_round(proxy_port, n, args.window, args.seconds)
                print(row(f"  through mamori, {n} binds", res, base, "PDU",
                          time.process_time() - c0, runq_wait() - w0))
                batches()
            for rate in [float(r) for r in args.rate.split(",") if r]:
                n = binds[0]
                base = await smpp_round(sink_port, n, args.window, args.seconds, rate)
                print(row(f"  direct, {n} binds, {rate:.0f} msg/s", base, None, "PDU"))
                sizes.clear()
                c0, w0 = time.process_time(), runq_wait()
                res = await smpp_round(proxy_port, n, args.window, args.seconds, rate)
                print(row(f"  mamori, {n} binds, {rate:.0f} msg/s", res, base, "PDU",
                          time.process_time() - c0, runq_wait() - w0))
                batches()
        if args.http:
            svc = await api_server.start(gw)
            if not args.no_gc_freeze:
                gc.freeze()
            print("HTTP hook (/v1/sms/check and /v1/sms/check-batch)")
            # not `sizes`: that name is the batch-size record the judge wrapper appends to
            http_sizes = [int(b) for b in args.http_batch.split(",") if b]
            for n in binds:
                for size in http_sizes:
                    c0, w0 = time.process_time(), runq_wait()
                    res = await http_round(api_port, n, size, args.seconds, args.http_client)
                    label = "check" if size == 1 else f"check-batch x{size}"
                    print(row(f"  {label}, {n} connections", res, None, "SMS",
                              time.process_time() - c0, runq_wait() - w0))
            if svc is not None:
                await svc.stop()
    finally:
        await proxy.stop()
        await gw.close()
        sink.terminate()
        sink.join()


if __name__ == "__main__":
    from gateway.config import load_settings
    from gateway.workers import event_loop_factory

    args = parse_args()
    with asyncio.Runner(loop_factory=event_loop_factory(load_settings(event_loop=args.loop))
                        ) as runner:
        runner.run(main(args))
