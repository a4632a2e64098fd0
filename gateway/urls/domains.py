"""Domain helpers over the Public Suffix List (the `publicsuffixlist` package ships a snapshot,
so nothing here needs the network)."""

from __future__ import annotations

from publicsuffixlist import PublicSuffixList

from gateway.caches import memo

_PSL = PublicSuffixList(accept_unknown=False)
_PSL_ICANN = PublicSuffixList(only_icann=True, accept_unknown=False)


@memo
def registered_domain(host: str) -> str:
    """eTLD+1 with private suffixes (`x.workers.dev`, `evil.co.jp`); the host itself when none."""
    if not host or host.startswith("[") or host.replace(".", "").isdigit():
        return host
    return _PSL.privatesuffix(host) or host


@memo
def icann_registered_domain(host: str) -> str:
    """eTLD+1 over ICANN suffixes only (`workers.dev`, `duckdns.org`)."""
    if not host or host.replace(".", "").isdigit():
        return host
    return _PSL_ICANN.privatesuffix(host) or host


def _tlds() -> frozenset[str]:
    rules: frozenset[str] = getattr(_PSL_ICANN, "_publicsuffix", frozenset())
    out = {r.rsplit(".", 1)[-1].lstrip("!*") for r in rules}
    out.discard("")
    return frozenset(out)


_TLDS = _tlds()


def is_tld(label: str) -> bool:
    """Whether `label` is a top-level domain in the ICANN section of the PSL."""
    label = label.lower()
    if _TLDS:
        return label in _TLDS
    return bool(label) and "." not in label and _PSL_ICANN.publicsuffix("x." + label) == label


@memo
def public_suffix(host: str) -> str:
    return _PSL_ICANN.publicsuffix(host) or host.rsplit(".", 1)[-1]


RESERVED_TLDS = frozenset({"test", "example", "invalid", "localhost"})  # RFC 2606 names


def known_tld(label: str) -> bool:
    """A TLD of the PSL, or a name reserved for tests and documentation (RFC 2606)."""
    return is_tld(label) or label.lower() in RESERVED_TLDS


def split_domain(host: str) -> tuple[str, str, str]:
    """(registered domain, public suffix, name): `a.evil.co.jp` -> (`evil.co.jp`, `co.jp`,
    `evil`). The name is the registered domain when there is no suffix."""
    rd = registered_domain(host)
    suffix = public_suffix(rd)
    name = rd[: -len(suffix) - 1] if rd != suffix and rd.endswith("." + suffix) else rd
    return rd, suffix, name
