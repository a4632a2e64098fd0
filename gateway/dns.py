"""Asynchronous DNS for the checks: one shared resolver with a TTL-respecting cache, negative
caching and timeouts, and a per-message view with a query budget.

- `DnsPythonBackend`: live DNS through dnspython's asyncio resolver.
- `ZoneBackend`: answers from a `zonedata` mapping in the format of the openspf test suite
  (name -> list of {TYPE: value} or `TIMEOUT`), read from YAML or JSON; used by tests, the
  benchmark and `mamori auth --zone`.
- `CachingResolver`: the shared cache in front of a backend (coalesces concurrent identical
  queries; NXDOMAIN/NODATA are cached with the negative TTL; temporary failures briefly).
- `MessageDns`: what one message's checks use: at most `max_queries` network lookups and
  an overall time budget; past it every lookup is a temporary failure (RFC "temperror").

Answers are lists of resource records `(owner, type, value)` in the shape the SPF and DKIM
libraries consume: A/AAAA -> address text, MX -> (preference, exchange), TXT -> tuple of
byte strings, PTR/CNAME -> target name. CNAMEs met on the way are part of the answer.

Every failure is a `DnsTempError`; nothing here raises anything else for a bad name or a
broken network, and nothing waits longer than its timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import ConfigError, GatewayError

QTYPES = frozenset({"A", "AAAA", "MX", "TXT", "PTR", "CNAME", "SPF", "NS", "SOA"})
MAX_CNAME_CHAIN = 8

Record = tuple[str, str, Any]
log = logging.getLogger("mamori.dns")


class DnsTempError(GatewayError):
    """A lookup failed temporarily (timeout, SERVFAIL, budget spent): RFC temperror."""


def normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


@dataclass(frozen=True, slots=True)
class Answer:
    name: str
    qtype: str
    records: tuple[Record, ...] = ()
    nxdomain: bool = False
    ttl: float = 300.0

    def values(self, qtype: str | None = None) -> list[Any]:
        want = qtype or self.qtype
        return [v for _, t, v in self.records if t == want]

    def txt(self) -> list[bytes]:
        """Each TXT record with its character-strings concatenated (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        return [b"".join(v) for v in self.values("TXT")]

    @property
    def empty(self) -> bool:
        return not self.values()


class Backend(Protocol):
    async def query(self, name: str, qtype: str) -> Answer: ...


# -- live DNS ---------------------------------------------------------------------------


class DnsPythonBackend:
    """dnspython's asyncio stub resolver (system resolv.conf unless nameservers are given)."""

    def __init__(self, *, timeout: float = 2.0, nameservers: Iterable[str] = ()) -> None:
        import dns.asyncresolver

        ns = list(nameservers)
        try:
            self._resolver = dns.asyncresolver.Resolver(configure=not ns)
        except Exception as exc:  # no resolv.conf: a clear configuration error
            raise ConfigError(f"cannot configure the DNS resolver: {exc}") from exc
        if ns:
            self._resolver.nameservers = [_nameserver(n) for n in ns]
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(timeout, 2.0)
        self.timeout = timeout

    async def query(self, name: str, qtype: str) -> Answer:
        import dns.exception
        import dns.name
        import dns.rdatatype
        import dns.resolver

        name = normalise_name(name)
        try:
            ans = await self._resolver.resolve(name + ".", qtype, raise_on_no_answer=False,
                                               search=False)
        except dns.resolver.NXDOMAIN as exc:
            responses: dict[Any, Any] = exc.kwargs.get("responses") or {}
            return Answer(name, qtype, (), nxdomain=True,
                          ttl=_negative_ttl(next(iter(responses.values()), None)))
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
            raise DnsTempError(f"{type(exc).__name__}") from None
        except (dns.name.LabelTooLong, dns.name.NameTooLong, dns.name.EmptyLabel):
            return Answer(name, qtype, (), nxdomain=True, ttl=300.0)
        except dns.exception.DNSException as exc:
            raise DnsTempError(type(exc).__name__) from None
        except OSError as exc:
            raise DnsTempError(f"network: {exc.strerror or type(exc).__name__}") from None
        records: list[Record] = []
        ttl: float | None = None
        for rrset in ans.response.answer:
            owner = normalise_name(rrset.name.to_text())
            rtype = dns.rdatatype.to_text(rrset.rdtype)
            ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
            for rd in rrset:
                records.append((owner, rtype, _rdata_value(rtype, rd)))
        if ttl is None:
            ttl = _negative_ttl(ans.response)
        return Answer(name, qtype, tuple(records), ttl=float(ttl))


def _nameserver(spec: str) -> Any:
    """'192.0.2.53', '192.0.2.53:5353', '2001:db8::53' or '[2001:db8::53]:5353'."""
    import dns.nameserver

    spec = spec.strip()
    host, port = spec, 53
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:]) if rest[1:].isdigit() else -1
    elif spec.count(":") == 1:
        host, _, p = spec.partition(":")
        port = int(p) if p.isdigit() else -1
    if not 0 < port < 65536:
        raise ConfigError(f"invalid nameserver {spec!r}: expected IP or IP:port")
    try:
        ipaddress.ip_address(host)
        return dns.nameserver.Do53Nameserver(host, port)
    except ValueError:
        raise ConfigError(f"invalid nameserver {spec!r}: expected IP or IP:port") from None


def _rdata_value(rtype: str, rd: Any) -> Any:
    if rtype in ("A", "AAAA"):
        return rd.address
    if rtype == "MX":
        return (rd.preference, normalise_name(rd.exchange.to_text()))
    if rtype in ("TXT", "SPF"):
        return tuple(rd.strings)
    if rtype in ("PTR", "CNAME", "NS"):
        return normalise_name(rd.target.to_text())
    return rd.to_text()


def _negative_ttl(response: Any) -> float:
    """RFC 2308: the negative TTL is min(SOA TTL, SOA minimum) from the authority section."""
    try:
        for rrset in response.authority:
            for rd in rrset:
                if hasattr(rd, "minimum"):
                    return float(min(rrset.ttl, rd.minimum))
    except Exception:
        pass
    return 300.0


# -- zone files ---------------------------------------------------------------------------


class ZoneBackend:
    """Answers from an openspf-style `zonedata` mapping.

    Semantics follow the suite's reference driver (pyspf's testspf.py): a name absent from the
    zone is NXDOMAIN (names under `error.` time out); `TIMEOUT` as an entry makes every query
    for a type the name has no record of time out; `SPF` records are also served as TXT when
    the name has no TXT record; `TXT: NONE` suppresses that; a CNAME is followed (the chain is
    part of the answer), and a CNAME loop answers with the chain alone.
    """

    outages = False  # TIMEOUT entries are part of the fixture: no circuit breaker

    def __init__(self, zonedata: Mapping[str, Any], *, ttl: float = 3600.0) -> None:
        self.ttl = ttl
        self.zone: dict[str, list[tuple[str, Any] | str]] = {}
        for name, entries in zonedata.items():
            self.zone[normalise_name(str(name))] = _zone_entries(str(name), entries)

    @classmethod
    def from_file(cls, path: str | Path) -> ZoneBackend:
        p = Path(path)
        try:
            text = p.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read zone file {p}: {exc.strerror}") from exc
        try:
            if p.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:
            raise ConfigError(f"zone file {p} is not valid YAML/JSON: {exc}") from exc
        if isinstance(data, dict) and isinstance(data.get("zonedata"), dict):
            data = data["zonedata"]
        if not isinstance(data, dict):
            raise ConfigError(f"zone file {p}: expected a mapping of names to records")
        return cls(data)

    def _lookup(self, name: str, qtype: str) -> tuple[list[Record], bool]:
        entries = self.zone.get(name)
        if entries is None:
            if name.startswith("error."):
                raise DnsTempError("timeout")
            return [], True
        found = False
        out: list[Record] = []
        for e in entries:
            if e == "TIMEOUT":
                if not found:
                    raise DnsTempError("timeout")
                break
            assert isinstance(e, tuple)
            t, v = e
            if t == qtype or t == "CNAME":
                found = found or t == qtype
                if v == "TIMEOUT":
                    if t == qtype:
                        raise DnsTempError("timeout")
                    continue
                out.append((name, t, v))
        return out, False

    async def query(self, name: str, qtype: str) -> Answer:
        name = normalise_name(name)
        if any(len(label) > 63 for label in name.split(".")):
            raise DnsTempError("label too long")
        records, nx = self._lookup(name, qtype)
        chain: list[Record] = []
        seen = {name}
        while qtype != "CNAME" and records and all(t == "CNAME" for _, t, _ in records):
            target = normalise_name(str(records[0][2]))
            chain.append(records[0])
            if target in seen or len(chain) > MAX_CNAME_CHAIN:
                return Answer(name, qtype, tuple(chain), ttl=self.ttl)
            seen.add(target)
            records, nx = self._lookup(target, qtype)
        if qtype != "CNAME":
            records = [r for r in records if r[1] != "CNAME"]
        return Answer(name, qtype, (*chain, *records), nxdomain=nx and not chain, ttl=self.ttl)


def _zone_entries(name: str, entries: Any) -> list[tuple[str, Any] | str]:
    if not isinstance(entries, list):
        entries = [entries]
    out: list[tuple[str, Any] | str] = []
    spf: list[tuple[str, Any]] = []
    has_txt = False
    for e in entries:
        if e == "TIMEOUT":
            out.append("TIMEOUT")
            continue
        if not isinstance(e, dict):
            raise ConfigError(f"zone entry for {name}: expected {{TYPE: value}} or TIMEOUT, got {e!r}")
        for t, v in e.items():
            t = str(t).upper()
            if t not in QTYPES:
                raise ConfigError(f"zone entry for {name}: unsupported type {t}")
            if v == "TIMEOUT":
                out.append((t, "TIMEOUT"))
                continue
            if t in ("TXT", "SPF"):
                strings = (v,) if isinstance(v, str) else tuple(str(s) for s in v)
                if t == "TXT":
                    has_txt = True
                if strings == ("NONE",):
                    continue
                val: Any = tuple(s.encode("utf-8") for s in strings)
                if t == "SPF":
                    spf.append(("TXT", val))
            elif t == "MX":
                if not isinstance(v, list | tuple) or len(v) != 2:
                    raise ConfigError(f"zone entry for {name}: MX needs [preference, exchange]")
                val = (int(v[0]), normalise_name(str(v[1])))
            elif t == "AAAA":
                try:
                    val = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, str(v)))
                except OSError:
                    raise ConfigError(f"zone entry for {name}: bad AAAA {v!r}") from None
            elif t in ("PTR", "CNAME", "NS"):
                val = str(v)
            else:
                val = str(v)
            out.append((t, val))
    if not has_txt:
        out.extend(spf)
    return out


# -- the shared cache ---------------------------------------------------------------------


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    temp_errors: int = 0


class CachingResolver:
    """A bounded LRU cache of answers in front of a backend, honouring TTLs."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_entries: int = 100_000,
        min_ttl: float = 5.0,
        max_ttl: float = 86_400.0,
        negative_ttl: float = 900.0,
        error_ttl: float = 5.0,
        trip_after: int = 20,
        cooldown: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.max_entries = max_entries
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self.error_ttl = error_ttl
        self.clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[float, Answer | DnsTempError]] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Future[Answer]] = {}
        self.stats = CacheStats()
        # circuit breaker: after `trip_after` consecutive backend failures, answer temperror
        # at once for `cooldown` seconds instead of letting every message wait on timeouts
        # a zone file's TIMEOUT entries are data, not an outage
        self.trip_after = trip_after if getattr(backend, "outages", True) else 0
        self.cooldown = cooldown
        self._failures = 0
        self._open_until = 0.0

    def peek(self, name: str, qtype: str) -> Answer | DnsTempError | None:
        """The cached answer (or cached temporary failure), or None; never queries."""
        key = (normalise_name(name), qtype)
        hit = self._cache.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires <= self.clock():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return value

    def put(self, answer: Answer | DnsTempError, name: str, qtype: str) -> None:
        key = (normalise_name(name), qtype)
        if isinstance(answer, DnsTempError):
            ttl = self.error_ttl
        elif answer.empty:
            ttl = min(max(answer.ttl, self.min_ttl), self.negative_ttl)
        else:
            ttl = min(max(answer.ttl, self.min_ttl), self.max_ttl)
        if ttl <= 0:
            return
        self._cache[key] = (self.clock() + ttl, answer)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    async def query(self, name: str, qtype: str) -> Answer:
        name = normalise_name(name)
        cached = self.peek(name, qtype)
        if cached is not None:
            self.stats.hits += 1
            if isinstance(cached, DnsTempError):
                raise DnsTempError(str(cached))
            return cached
        key = (name, qtype)
        fut = self._inflight.get(key)
        if fut is not None:  # someone is already asking: share the answer
            self.stats.hits += 1
            try:
                return await asyncio.shield(fut)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if fut.cancelled() and task is not None and not task.cancelling():
                    # the first asker gave up (its own timeout), not us
                    raise DnsTempError("lookup abandoned") from None
                raise
        if self._open_until > self.clock():
            self.stats.temp_errors += 1
            raise DnsTempError("resolver unavailable (recent failures)")
        self.stats.misses += 1
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            answer = await self.backend.query(name, qtype)
        except DnsTempError as exc:
            self.stats.temp_errors += 1
            self._failed()
            self.put(exc, name, qtype)
            fut.set_exception(DnsTempError(str(exc)))
            fut.exception()  # mark retrieved: waiters re-raise their own copy
            raise
        except asyncio.CancelledError:  # the caller's timeout: counts as a failed lookup
            self._failed()
            fut.cancel()
            raise
        except Exception as exc:  # a backend bug must not escape as anything but temperror
            self.stats.temp_errors += 1
            err = DnsTempError(f"resolver error: {type(exc).__name__}")
            fut.set_exception(err)
            fut.exception()
            raise err from None
        finally:
            self._inflight.pop(key, None)
        self._failures = 0
        self.put(answer, name, qtype)
        fut.set_result(answer)
        return answer

    def _failed(self) -> None:
        self._failures += 1
        if self.trip_after and self._failures >= self.trip_after:
            self._failures = 0
            self._open_until = self.clock() + self.cooldown
            log.warning("DNS lookups keep failing; answering temperror for %.0fs", self.cooldown)

    def __len__(self) -> int:
        return len(self._cache)


# -- per message -------------------------------------------------------------------------


class NeedDns(Exception):
    """Raised by a synchronous lookup that is not answered yet (see `run_with_dns`)."""


@dataclass
class MessageDns:
    """One message's view of the resolver: a budget of network lookups and of time.

    `known` holds what this message has looked up, so synchronous library code (pyspf,
    dkimpy) can replay it through a `SyncView` without touching the network.
    """

    resolver: CachingResolver
    max_queries: int = 30
    deadline: float | None = None  # time.monotonic() value
    query_timeout: float = 2.0
    queries: int = 0
    known: dict[tuple[str, str], Answer | DnsTempError] = field(default_factory=dict)

    async def query(self, name: str, qtype: str) -> Answer:
        key = (normalise_name(name), qtype)
        got = self.known.get(key)
        if got is None:
            got = await self.fetch(*key)
        if isinstance(got, DnsTempError):
            raise DnsTempError(str(got))
        return got

    async def fetch(self, name: str, qtype: str) -> Answer | DnsTempError:
        key = (name, qtype)
        cached = self.resolver.peek(name, qtype)
        if cached is not None:
            self.resolver.stats.hits += 1
            self.known[key] = cached
            return cached
        result: Answer | DnsTempError
        if self.queries >= self.max_queries:
            result = DnsTempError("per-message DNS budget spent")
        else:
            self.queries += 1
            timeout = self.query_timeout
            if self.deadline is not None:
                timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                result = DnsTempError("per-message DNS time budget spent")
            else:
                try:
                    async with asyncio.timeout(timeout):
                        result = await self.resolver.query(name, qtype)
                except TimeoutError:
                    result = DnsTempError("timeout")
                except DnsTempError as exc:
                    result = exc
        self.known[key] = result
        return result


class SyncView:
    """A synchronous window on a `MessageDns` for library callbacks (pyspf, dkimpy): answers
    what the message already knows (or the shared cache holds) and records the rest as
    missing. One per computation, so concurrent checks do not mix their misses."""

    def __init__(self, mdns: MessageDns, *, read_cache: bool = True) -> None:
        self.mdns = mdns
        self.read_cache = read_cache  # False in worker threads: the cache is the loop's
        self.missing: set[tuple[str, str]] = set()

    def lookup(self, name: str, qtype: str) -> Answer:
        """The answer if known; else record it as missing and raise `NeedDns`. A known
        temporary failure raises `DnsTempError`."""
        key = (normalise_name(name), qtype)
        known = self.mdns.known
        got = known.get(key)
        if got is None and self.read_cache:
            cached = self.mdns.resolver.peek(*key)
            if cached is not None:
                known[key] = got = cached
        if got is None:
            self.missing.add(key)
            raise NeedDns(f"{key[0]}/{qtype}")
        if isinstance(got, DnsTempError):
            raise DnsTempError(str(got))
        return got


async def run_with_dns(
    mdns: MessageDns,
    compute: Callable[[SyncView], Any],
    *,
    max_rounds: int = 25,
    in_thread: bool = False,
) -> Any:
    """Run a synchronous computation whose DNS goes through a `SyncView` of `mdns`.

    Each round runs it; if it asked for anything not yet known (libraries may swallow the
    `NeedDns`, so the record of misses decides, not the exception), those lookups are fetched
    concurrently and it runs again. With a warm cache it runs once, inline or in a thread.
    """
    for _ in range(max_rounds):
        view = SyncView(mdns, read_cache=not in_thread)
        try:
            if in_thread:
                result = await asyncio.to_thread(compute, view)
            else:
                result = compute(view)
        except NeedDns:
            result = None
        todo = [k for k in view.missing if k not in mdns.known]
        if not view.missing:
            return result
        await asyncio.gather(*(mdns.fetch(n, t) for n, t in todo))
    raise DnsTempError("too many dependent DNS lookups")


def build_resolver(*, zone_file: str = "", timeout: float = 2.0, nameservers: Iterable[str] = (),
                   max_entries: int = 100_000) -> CachingResolver:
    backend: Backend
    if zone_file:
        backend = ZoneBackend.from_file(zone_file)
    else:
        try:
            backend = DnsPythonBackend(timeout=timeout, nameservers=nameservers)
        except ConfigError as exc:
            # no resolv.conf (a bare container): the gateway still starts; every lookup is a
            # temporary failure, so authentication answers temperror until DNS is configured
            log.error("%s; DNS lookups will fail temporarily", exc)
            backend = UnavailableBackend(str(exc))
    return CachingResolver(backend, max_entries=max_entries)


class UnavailableBackend:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def query(self, name: str, qtype: str) -> Answer:
        raise DnsTempError("no DNS resolver configured")
