"""SpamAssassin (Debian's 4.0.1) offline: spamd on a private loopback port with a private site
configuration, driven through the real `spamc` client (`spamc -c`: check only)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from perf.bench.corpus import Sample
from perf.bench.drive import Reply
from perf.bench.procs import Daemon, free_port

PACKAGES = ("spamassassin", "spamc", "spamd")
SITE_PRE = Path("/etc/spamassassin")
USER = "nobody"
MAX_SIZE = 50 * 1024 * 1024  # as mamori's SMTP limit; spamc's own default (500 KB) skips big mail
THRESHOLD = "score >= required_score (5.0)"

LOCAL_CF = """\
# Written by perf/compare: SpamAssassin's packaged rules, offline, no self-training.
dns_available no
skip_rbl_checks 1
use_razor2 0
use_pyzor 0
use_bayes 0
bayes_auto_learn 0
report_safe 0
required_score 5.0
"""


def version() -> str:
    try:
        out = subprocess.run(["spamd", "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return "?"
    for word in out.stdout.split():
        if word[:1].isdigit():
            return word
    return "?"


def configure(root: Path) -> dict[str, int]:
    if root.exists():
        shutil.rmtree(root)
    site = root / "site"
    site.mkdir(parents=True)
    for pre in sorted(SITE_PRE.glob("*.pre")):  # plugin loading stays as packaged
        shutil.copy(pre, site / pre.name)
    (site / "local.cf").write_text(LOCAL_CF)
    (root / "home").mkdir()
    (root / "log").mkdir()
    shutil.chown(root / "home", USER)
    root.chmod(0o755)
    return {"spamd": free_port()}


def daemon(root: Path, port: int, children: int) -> Daemon:
    argv = [
        "spamd", f"--listen=127.0.0.1:{port}", "--allowed-ips=127.0.0.1",
        f"--siteconfigpath={root / 'site'}", "--nouser-config", "--local",
        f"--helper-home-dir={root / 'home'}", f"--username={USER}",
        f"--max-children={children}", f"--min-children={children}", "--min-spare=1",
        f"--max-spare={children}", "--max-conn-per-child=1000000", "--timeout-child=300",
        f"--syslog={root / 'log' / 'spamd.log'}", f"--pidfile={root / 'spamd.pid'}",
    ]
    return Daemon("spamd", argv, root / "log" / "stdout.log")


def parse_spamc_check(rc: int, stdout: bytes) -> Reply:
    """`spamc -c -x` prints 'score/threshold'; exit 1 = spam, 0 = ham, anything else = error."""
    text = stdout.decode("ascii", "replace").strip()
    if rc not in (0, 1):
        raise ValueError(f"spamc exited {rc} ({text[:80]!r})")
    score_s, sep, thr_s = text.partition("/")
    try:
        score, threshold = float(score_s), float(thr_s)
    except ValueError:
        raise ValueError(f"unexpected spamc output {text[:80]!r}") from None
    if not sep:
        raise ValueError(f"unexpected spamc output {text[:80]!r}")
    flagged = rc == 1
    if flagged != (score >= threshold):
        raise ValueError(f"spamc exit {rc} disagrees with {text!r}")
    return Reply(flagged, score, f"{score}/{threshold}")


class Spamc:
    interface = "spamc"

    def __init__(self, port: int) -> None:
        self.argv = ["spamc", "-d", "127.0.0.1", "-p", str(port), "-c", "-x", "-t", "300",
                     "-s", str(MAX_SIZE)]

    async def send(self, cid: int, sample: Sample) -> Reply:
        proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        try:
            out, _ = await proc.communicate(sample.raw)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        assert proc.returncode is not None
        return parse_spamc_check(proc.returncode, out)

    async def close(self) -> None:
        return None


def ready(port: int) -> bool:
    """`spamc -K` pings spamd (exit 0 and a SPAMD/x.y status line once it serves)."""
    try:
        r = subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(port), "-K"],
                           capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and r.stdout.startswith(b"SPAMD/")
