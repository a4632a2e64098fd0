"""Headers mamori adds to scanned mail (shared by the SMTP filter and the milter)."""

from __future__ import annotations

from gateway.verdict import Action, Verdict

MAX_SYMBOLS_HEADER = 900


def mamori_headers(verdict: Verdict) -> list[tuple[str, str]]:
    """`Authentication-Results` (when the auth checks produced it) and the `X-Mamori-*` set."""
    out = list(verdict.headers)
    out.append(("X-Mamori-Action", verdict.action.value))
    out.append(("X-Mamori-Score", f"{verdict.score:.2f}"))
    names = ", ".join(
        f"{s.name}({s.score:.2f})" for s in sorted(verdict.symbols.values(), key=lambda s: -s.score)
    )
    if len(names) > MAX_SYMBOLS_HEADER:
        names = names[: MAX_SYMBOLS_HEADER - 4].rsplit(",", 1)[0] + ", ..."
    if names:
        out.append(("X-Mamori-Symbols", fold(names)))
    if verdict.action is Action.TAG:
        out.append(("X-Mamori-Spam", "yes"))
    if verdict.model_version:
        out.append(("X-Mamori-Model", verdict.model_version))
    return out


def fold(value: str, width: int = 76) -> str:
    """Fold a comma-separated header value at commas so lines stay under the SMTP limit."""
    parts = value.split(", ")
    lines: list[str] = []
    cur = ""
    for p in parts:
        cand = f"{cur}, {p}" if cur else p
        if cur and len(cand) > width:
            lines.append(cur + ",")
            cur = p
        else:
            cur = cand
    lines.append(cur)
    return "\r\n\t".join(lines)


def render(headers: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{n}: {v}\r\n".encode("utf-8", "surrogateescape") for n, v in headers)
