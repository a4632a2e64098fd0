"""Jasmin SMS gateway interceptor: ask mamori's HTTP hook about each MT (submit_sm) or MO
(deliver_sm) message and apply the verdict.

Install it as an MT and/or MO interceptor (see README.md). Jasmin's interceptord executes
this file with `routable` in scope and reads back `smpp_status` / `http_status`: leaving them
unset (or 0 / 200) lets the message through.

Environment of interceptord:
  MAMORI_URL            base URL of mamori's HTTP API (default http://127.0.0.1:8080)
  MAMORI_API_KEY        an API key holding the scope sms:check (MAMORI_API__KEYS)
  MAMORI_TIMEOUT        seconds to wait for mamori (default 0.5)
  MAMORI_FAIL_OPEN      1 (default): deliver when mamori cannot answer; 0: temporary failure
  MAMORI_REJECT_STATUS  SMPP command_status for reject/quarantine (default 0x102, ESME_RX_R_APPN)
  MAMORI_TEMP_STATUS    SMPP command_status for soft rejects and fail-closed (default 0x100)

Only the Python standard library is used, so it runs in Jasmin's own virtualenv.
"""

import json
import os
import urllib.error
import urllib.request

REJECT_HTTP_STATUS = 403
TEMP_HTTP_STATUS = 503


def _int(value, default):
    try:
        return int(str(value), 0)
    except (TypeError, ValueError):
        return default


def _text(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


def _payload(pdu):
    """All parts of a (possibly chained, concatenated) message: user data without UDH."""
    data = b""
    part = pdu
    while part is not None:
        sm = part.params.get("short_message") or part.params.get("message_payload") or b""
        if isinstance(sm, str):
            sm = sm.encode("latin-1")
        esm = part.params.get("esm_class")
        udhi = bool(getattr(esm, "gsmFeatures", None) and "UDHI_INDICATOR_SET" in
                    str(esm.gsmFeatures)) or (isinstance(esm, int) and esm & 0x40)
        if udhi and sm:
            sm = sm[sm[0] + 1:]
        data += sm
        part = getattr(part, "nextPdu", None)
    return data


def _data_coding(pdu):
    dc = pdu.params.get("data_coding", 0)
    if isinstance(dc, int):
        return dc
    # Jasmin's DataCoding object: schemeData holds the SMPP value
    for attr in ("schemeData", "value"):
        v = getattr(dc, attr, None)
        if v is not None:
            return _int(getattr(v, "value", v), 0)
    return _int(dc, 0)


def _ton(pdu):
    ton = pdu.params.get("source_addr_ton")
    names = {"UNKNOWN": 0, "INTERNATIONAL": 1, "NATIONAL": 2, "NETWORK_SPECIFIC": 3,
             "SUBSCRIBER_NUMBER": 4, "ALPHANUMERIC": 5, "ABBREVIATED": 6}
    if isinstance(ton, int):
        return ton
    return names.get(str(getattr(ton, "name", ton)).upper().split(".")[-1])


def check(routable, env=os.environ, opener=urllib.request.urlopen):
    """Ask mamori; return (smpp_status, http_status) to set, or (None, None) to pass."""
    pdu = routable.pdu
    account = ""
    user = getattr(routable, "user", None)
    if user is not None:
        account = _text(getattr(user, "uid", ""))
    body = {
        "sender": _text(pdu.params.get("source_addr")),
        "recipient": _text(pdu.params.get("destination_addr")),
        "payload": _payload(pdu).hex(),
        "data_coding": _data_coding(pdu),
        "account": account or "jasmin",
        "metadata": {"ingress": "jasmin"},
    }
    ton = _ton(pdu)
    if ton is not None:
        body["sender_ton"] = ton
    url = env.get("MAMORI_URL", "http://127.0.0.1:8080").rstrip("/") + "/v1/sms/check"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json",
        "Authorization": "Bearer " + env.get("MAMORI_API_KEY", "")})
    reject = _int(env.get("MAMORI_REJECT_STATUS"), 0x102)
    temp = _int(env.get("MAMORI_TEMP_STATUS"), 0x100)
    try:
        with opener(req, timeout=float(env.get("MAMORI_TIMEOUT", "0.5"))) as resp:
            verdict = json.loads(resp.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        if env.get("MAMORI_FAIL_OPEN", "1") == "1":
            return None, None
        return temp, TEMP_HTTP_STATUS
    action = verdict.get("action", "accept")
    if action in ("reject", "quarantine"):
        return reject, REJECT_HTTP_STATUS
    if action == "soft_reject":
        return temp, TEMP_HTTP_STATUS
    return None, None


if "routable" in globals():  # executed by Jasmin's interceptord
    _smpp, _http = check(routable)  # noqa: F821
    if _smpp is not None:
        smpp_status = _smpp
        http_status = _http
