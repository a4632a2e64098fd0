"""Forged Authentication-Results: RFC 8601 section 5 asks a border MTA to remove incoming
Authentication-Results fields that carry its own authserv-id before it adds its own, so that
nobody upstream can claim "spf=pass" in our name. The SMTP filter removes them from the raw
message; the milter deletes them through the MTA (SMFIR_CHGHEADER)."""

from __future__ import annotations

import re

_COMMENT = re.compile(r"\([^()]*\)")
_FIELD = re.compile(rb"^Authentication-Results[ \t]*:(.*(?:\r?\n[ \t].*)*)\r?\n", re.I | re.M)


def authserv_id_of(value: str) -> str:
    """The authserv-id of an Authentication-Results value (comments dropped, lower case)."""
    head = value.split(";", 1)[0]
    for _ in range(3):  # nested comments, a few levels
        head = _COMMENT.sub(" ", head)
    parts = head.split()
    return parts[0].strip('"').lower() if parts else ""


def claims_authserv_id(value: str, ours: str) -> bool:
    return bool(ours) and authserv_id_of(value) == ours.lower()


def strip_forged(raw: bytes, ours: str) -> bytes:
    """`raw` without the Authentication-Results fields of its header block that claim `ours`."""
    end = raw.find(b"\r\n\r\n")
    end = end + 2 if end >= 0 else raw.find(b"\n\n") + 1  # just past the last field's line end
    if end <= 0 or b"authentication-results" not in raw[:end].lower():
        return raw
    head, rest = raw[:end], raw[end:]

    def drop(m: re.Match[bytes]) -> bytes:
        value = m.group(1).decode("utf-8", "replace")
        return b"" if claims_authserv_id(value, ours) else m.group(0)

    return _FIELD.sub(drop, head) + rest
