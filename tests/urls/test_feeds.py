"""Feed parsers, validation, scopes and the rejected-lines report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.urls.canon import canonicalize, expressions
from gateway.urls.feeds import FeedReport, load_feed
from gateway.urls.index import ListBuilder, UrlIndex

JPCERT = """date,URL,description
2023/12/01 10:00:00,https://phish-one.example/login,Amazon
2023/12/01 10:00:00,https://bad-two.top/,三井住友カード
2023/12/01 10:00:00,,Amazon
2023/12/01 10:00:00,not a url at all,Amazon
2023/12/02 11:00:00,https://phish-one.example/login,Amazon
"""
URLHAUS_CSV = """################################################################
# abuse.ch URLhaus Database Dump (CSV)
# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter
################################################################
"3","2024-01-01 00:00:00","http://1.2.3.4/bins/x.sh","online","2024-01-01","malware_download","elf","https://urlhaus.abuse.ch/url/3/","r"
"4","2024-01-01 00:00:00","https://mal.example/a.exe","offline","","malware_download","exe","https://urlhaus.abuse.ch/url/4/","r"
"""
URLHAUS_SPLUNK = """# Title: Online Malicious URL Splunk Lookup
"host","path","message","updated"
"mal.example","/drop/x","urlhaus-filter malicious website detected","2025-07-19T12:11:28Z"
"1.2.3.4","","urlhaus-filter malicious website detected","2025-07-19T12:11:28Z"
"""
URLHAUS_HOSTS = """# Title: Malicious Hosts Blocklist
0.0.0.0 mal.example
0.0.0.0 other-bad.example
"""
URLHAUS_ADBLOCK = """! Title: Online Malicious URL Blocklist
||mal.example^
mal2.example/path/x
"""
PHISHTANK_CSV = """phish_id,url,phish_detail_url,submission_time,verified,verification_time,online,target
1,https://pt-phish.example/x,http://www.phishtank.com/phish_detail.php?phish_id=1,2024-01-01T00:00:00+00:00,yes,2024-01-01T00:00:00+00:00,yes,PayPal
2,http://pt-other.example/,http://www.phishtank.com/phish_detail.php?phish_id=2,2024-01-01T00:00:00+00:00,yes,2024-01-01T00:00:00+00:00,yes,Other
"""
PHISHTANK_JSON = json.dumps([
    {"phish_id": 1, "url": "https://pt-phish.example/x", "target": "PayPal"},
    {"phish_id": 2, "url": "http://pt-other.example/", "target": "Other"},
    {"phish_id": 3},
])
OPENPHISH = "https://op-phish.example/login.php\nhttp://op-other.example/\n\n"
PLAIN = """# carrier block list
bad-one.example
bad-two.example/path\tsmishing campaign 42
http://bad-three.example/x, parcel scam
this line has spaces
.
"""


def load(tmp_path: Path, fmt: str, text: str, scope: str = "url"
         ) -> tuple[UrlIndex, FeedReport]:
    p = tmp_path / f"feed.{fmt}"
    p.write_text(text, encoding="utf-8")
    b = ListBuilder(fmt, "block")
    r = FeedReport(str(p))
    load_feed(p, fmt, b, r, scope=scope)
    return UrlIndex.from_lists([b.build()]), r


def labels(idx: UrlIndex, url: str) -> list[str]:
    return [h.label for h in idx.lookup(expressions(canonicalize(url)))]


def test_jpcert(tmp_path: Path) -> None:
    idx, r = load(tmp_path, "jpcert", JPCERT)
    assert (r.accepted, r.duplicates, r.rejected) == (2, 1, 2)
    assert labels(idx, "https://phish-one.example/login?x=1") == ["Amazon"]
    assert labels(idx, "https://sub.bad-two.top/anything") == ["三井住友カード"]
    assert labels(idx, "https://phish-one.example/") == []  # url scope: only that path
    assert {s.line for s in r.samples} == {4, 5}


def test_jpcert_host_scope_blocks_the_whole_host(tmp_path: Path) -> None:
    idx, _ = load(tmp_path, "jpcert", JPCERT, scope="host")
    assert labels(idx, "https://phish-one.example/") == ["Amazon"]


def test_domain_scope_respects_private_suffixes(tmp_path: Path) -> None:
    text = "date,URL,description\n2023/01/01 00:00:00,https://a.evil-dom.com/x,X\n" \
           "2023/01/01 00:00:00,https://abc.duckdns.org/,Y\n"
    idx, _ = load(tmp_path, "jpcert", text, scope="domain")
    assert labels(idx, "https://other.evil-dom.com/") == ["X"]
    assert labels(idx, "https://abc.duckdns.org/z") == ["Y"]
    assert labels(idx, "https://xyz.duckdns.org/") == []  # another user of duckdns.org


def test_shared_hosts_are_never_widened(tmp_path: Path) -> None:
    text = ("date,URL,description\n2023/01/01 00:00:00,https://cutt.ly/abc,X\n"
            "2023/01/01 00:00:00,https://docs.google.com/forms/d/e/1/viewform,Y\n")
    idx, _ = load(tmp_path, "jpcert", text, scope="domain")
    assert labels(idx, "https://cutt.ly/abc") == ["X"]
    assert labels(idx, "https://cutt.ly/other") == []
    assert labels(idx, "https://docs.google.com/document/x") == []


@pytest.mark.parametrize("text", [URLHAUS_CSV, URLHAUS_SPLUNK, URLHAUS_HOSTS, URLHAUS_ADBLOCK])
def test_urlhaus_forms(tmp_path: Path, text: str) -> None:
    idx, r = load(tmp_path, "urlhaus", text)
    assert r.rejected == 0
    assert r.accepted == 2
    probes = ["https://mal.example/a.exe", "https://mal.example/drop/x",
              "http://1.2.3.4/bins/x.sh", "http://mal2.example/path/x/y", "http://other-bad.example/"]
    assert sum(1 for u in probes if labels(idx, u)) >= 2
    assert labels(idx, "http://unrelated.example/") == []


def test_phishtank_csv_and_json(tmp_path: Path) -> None:
    idx, r = load(tmp_path, "phishtank", PHISHTANK_CSV)
    assert r.accepted == 2 and r.rejected == 0
    assert labels(idx, "https://pt-phish.example/x") == ["PayPal"]
    assert labels(idx, "http://pt-other.example/") == [""]
    idx, r = load(tmp_path, "phishtank", PHISHTANK_JSON)
    assert r.accepted == 2 and r.rejected == 1
    assert labels(idx, "https://pt-phish.example/x") == ["PayPal"]


def test_phishtank_bad_json(tmp_path: Path) -> None:
    _, r = load(tmp_path, "phishtank", "[{not json")
    assert r.rejected == 1 and "bad JSON" in r.samples[0].reason


def test_openphish(tmp_path: Path) -> None:
    idx, r = load(tmp_path, "openphish", OPENPHISH)
    assert r.accepted == 2
    assert labels(idx, "https://op-phish.example/login.php") == [""]


def test_plain_with_labels_and_rejects(tmp_path: Path) -> None:
    idx, r = load(tmp_path, "plain", PLAIN)
    assert r.accepted == 3
    assert r.rejected == 2
    assert labels(idx, "http://bad-two.example/path/deeper") == ["smishing campaign 42"]
    assert labels(idx, "http://bad-three.example/x") == ["parcel scam"]
    assert labels(idx, "http://x.bad-one.example/") == [""]
    reasons = set(r.reasons)
    assert "spaces inside the entry" in reasons


def test_invalid_utf8_does_not_crash(tmp_path: Path) -> None:
    p = tmp_path / "bin.txt"
    p.write_bytes(b"\xff\xfe\x00garbage\nok-host.example\n")
    b = ListBuilder("plain", "block")
    r = FeedReport(str(p))
    load_feed(p, "plain", b, r)
    assert r.accepted == 1


def test_real_jpcert_month_parses(shared_data: Path, tmp_path: Path) -> None:
    p = shared_data / "urls" / "jpcert_phishurl" / "202312.csv"
    b = ListBuilder("jpcert", "block")
    r = FeedReport(str(p))
    load_feed(p, "jpcert", b, r)
    assert r.accepted > 1000
    assert r.rejected < r.accepted * 0.01


@pytest.mark.parametrize("name", ["urlhaus-filter-domains.txt", "urlhaus-filter-online.txt",
                                  "urlhaus-filter-hosts.txt", "urlhaus-filter-splunk-online.csv"])
def test_real_urlhaus_lists_load_whole(shared_data: Path, name: str) -> None:
    p = shared_data / "urls" / "urlhaus" / name
    b = ListBuilder("urlhaus", "block")
    r = FeedReport(str(p))
    load_feed(p, "urlhaus", b, r)
    assert r.accepted > 2000
    assert r.rejected == 0, r.samples[:3]
