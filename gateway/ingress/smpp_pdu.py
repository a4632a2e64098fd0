"""SMPP 3.4 PDU codec: framing, the PDUs a firewall proxy handles, TLVs, named constants.

Designed for the hot path: a PDU is parsed once from a `memoryview`-free bytes slice with
`struct` and plain index arithmetic; bodies of PDUs the proxy only relays are kept as bytes
and re-framed with a new sequence number without re-encoding (`reframe`).

Errors are values, not tracebacks: `PduError` carries the `command_status` the peer must get
(`ESME_RINVCMDLEN`, `ESME_RINVCMDID`, ...), and whether the spec wants a `generic_nack`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
MAX_PDU_LEN = 64 * 1024  # generous: a submit_sm with a 64 KiB message_payload

# -- command ids -------------------------------------------------------------------------
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_RECEIVER_RESP = 0x80000001
BIND_TRANSMITTER = 0x00000002
BIND_TRANSMITTER_RESP = 0x80000002
QUERY_SM = 0x00000003
QUERY_SM_RESP = 0x80000003
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
REPLACE_SM = 0x00000007
REPLACE_SM_RESP = 0x80000007
CANCEL_SM = 0x00000008
CANCEL_SM_RESP = 0x80000008
BIND_TRANSCEIVER = 0x00000009
BIND_TRANSCEIVER_RESP = 0x80000009
OUTBIND = 0x0000000B
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
SUBMIT_MULTI = 0x00000021
SUBMIT_MULTI_RESP = 0x80000021
ALERT_NOTIFICATION = 0x00000102
DATA_SM = 0x00000103
DATA_SM_RESP = 0x80000103

RESP_BIT = 0x80000000
BIND_COMMANDS = frozenset({BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER})
KNOWN_COMMANDS = frozenset({
    GENERIC_NACK, BIND_RECEIVER, BIND_RECEIVER_RESP, BIND_TRANSMITTER, BIND_TRANSMITTER_RESP,
    QUERY_SM, QUERY_SM_RESP, SUBMIT_SM, SUBMIT_SM_RESP, DELIVER_SM, DELIVER_SM_RESP, UNBIND,
    UNBIND_RESP, REPLACE_SM, REPLACE_SM_RESP, CANCEL_SM, CANCEL_SM_RESP, BIND_TRANSCEIVER,
    BIND_TRANSCEIVER_RESP, OUTBIND, ENQUIRE_LINK, ENQUIRE_LINK_RESP, SUBMIT_MULTI,
    SUBMIT_MULTI_RESP, ALERT_NOTIFICATION, DATA_SM, DATA_SM_RESP,
})
COMMAND_NAMES = {v: k.lower() for k, v in globals().items()
                 if isinstance(v, int) and k.isupper() and v in KNOWN_COMMANDS and k != "RESP_BIT"}

# -- command_status ----------------------------------------------------------------------
ESME_ROK = 0x00000000
ESME_RINVMSGLEN = 0x00000001
ESME_RINVCMDLEN = 0x00000002
ESME_RINVCMDID = 0x00000003
ESME_RINVBNDSTS = 0x00000004
ESME_RALYBND = 0x00000005
ESME_RSYSERR = 0x00000008
ESME_RINVSRCADR = 0x0000000A
ESME_RINVDSTADR = 0x0000000B
ESME_RBINDFAIL = 0x0000000D
ESME_RINVPASWD = 0x0000000E
ESME_RINVSYSID = 0x0000000F
ESME_RMSGQFUL = 0x00000014
ESME_RSUBMITFAIL = 0x00000045
ESME_RTHROTTLED = 0x00000058
ESME_RINVESMCLASS = 0x00000043
ESME_RINVOPTPARSTREAM = 0x000000C0
ESME_ROPTPARNOTALLWD = 0x000000C1
ESME_RINVPARLEN = 0x000000C2
ESME_RMISSINGOPTPARAM = 0x000000C3
ESME_RINVOPTPARAMVAL = 0x000000C4
ESME_RDELIVERYFAILURE = 0x000000FE
ESME_RUNKNOWNERR = 0x000000FF
ESME_RX_T_APPN = 0x00000100
ESME_RX_P_APPN = 0x00000101
ESME_RX_R_APPN = 0x00000102

STATUS_NAMES = {v: k for k, v in globals().items() if k.startswith("ESME_R")}


def status_value(name_or_int: str | int) -> int:
    """'ESME_RX_R_APPN', '0x102' or 258 -> 258; raises ValueError for unknown names."""
    if isinstance(name_or_int, int):
        return name_or_int
    s = name_or_int.strip()
    for value, name in STATUS_NAMES.items():
        if name.upper() == s.upper():
            return int(value)
    try:
        return int(s, 0)
    except ValueError:
        raise ValueError(f"unknown SMPP command_status {name_or_int!r}") from None


# -- esm_class, TON, NPI, TLV tags --------------------------------------------------------
ESM_UDHI = 0x40
ESM_TYPE_MASK = 0x3C
ESM_DELIVERY_RECEIPT = 0x04

TON_UNKNOWN = 0
TON_INTERNATIONAL = 1
TON_NATIONAL = 2
TON_NETWORK_SPECIFIC = 3
TON_SUBSCRIBER = 4
TON_ALPHANUMERIC = 5
TON_ABBREVIATED = 6

TLV_DEST_ADDR_SUBUNIT = 0x0005
TLV_USER_MESSAGE_REFERENCE = 0x0204
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_SC_INTERFACE_VERSION = 0x0210
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427

INTERFACE_VERSION_34 = 0x34


class PduError(Exception):
    """A PDU that cannot be handled. `status`: what the peer gets; `nack`: answer with a
    generic_nack (framing or unknown command) rather than the command's own response;
    `fatal`: the stream cannot be resynchronised and the connection must close."""

    def __init__(self, status: int, reason: str, *, nack: bool = False, fatal: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.nack = nack
        self.fatal = fatal


@dataclass(slots=True)
class Pdu:
    command_id: int
    status: int
    sequence: int
    body: bytes = b""

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command_id, f"0x{self.command_id:08x}")

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESP_BIT)



def encode(command_id: int, sequence: int, body: bytes = b"", status: int = ESME_ROK) -> bytes:
    return HEADER.pack(HEADER_LEN + len(body), command_id, status, sequence) + body


def reframe(pdu: Pdu, sequence: int) -> bytes:
    """The same PDU under another sequence number (relaying without re-encoding)."""
    return HEADER.pack(HEADER_LEN + len(pdu.body), pdu.command_id, pdu.status, sequence) + pdu.body


class FrameDecoder:
    """Split a byte stream into PDUs. `feed` returns complete PDUs; a framing error raises a
    fatal `PduError` (after it, the stream is not trusted: answer generic_nack and close)."""

    __slots__ = ("_buf", "max_len")

    def __init__(self, max_len: int = MAX_PDU_LEN) -> None:
        self._buf = bytearray()
        self.max_len = max_len

    def feed(self, data: bytes) -> list[Pdu]:
        buf = self._buf
        buf += data
        out: list[Pdu] = []
        pos = 0
        n = len(buf)
        unpack = HEADER.unpack_from
        while n - pos >= HEADER_LEN:
            length, cid, status, seq = unpack(buf, pos)
            if length < HEADER_LEN or length > self.max_len:
                del buf[:pos]
                raise PduError(ESME_RINVCMDLEN, f"command_length {length}", nack=True, fatal=True)
            if n - pos < length:
                break
            out.append(Pdu(cid, status, seq, bytes(buf[pos + HEADER_LEN : pos + length])))
            pos += length
        if pos:
            del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


# -- field readers -----------------------------------------------------------------------


_FIELD_STATUS = {"source_addr": ESME_RINVSRCADR, "destination_addr": ESME_RINVDSTADR,
                 "system_id": ESME_RINVSYSID, "password": ESME_RINVPASWD}


def _cstring(body: bytes, pos: int, maxlen: int, what: str) -> tuple[str, int]:
    """A NUL-terminated C-Octet string of at most `maxlen` bytes including the NUL.
    The PDU ending inside the field is a bad command_length (generic_nack); a field longer
    than its maximum is that field's error."""
    end = body.find(b"\0", pos, pos + maxlen)
    if end < 0:
        if body.find(b"\0", pos) < 0:
            raise PduError(ESME_RINVCMDLEN, f"{what}: missing NUL terminator", nack=True)
        raise PduError(_FIELD_STATUS.get(what, ESME_RINVPARLEN), f"{what}: too long")
    return body[pos:end].decode("latin-1"), end + 1


def _u8(body: bytes, pos: int, what: str) -> tuple[int, int]:
    if pos >= len(body):
        raise PduError(ESME_RINVCMDLEN, f"{what}: truncated", nack=True)
    return body[pos], pos + 1


def parse_tlvs(body: bytes, pos: int) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    n = len(body)
    while pos < n:
        if n - pos < 4:
            raise PduError(ESME_RINVOPTPARSTREAM, "truncated TLV header")
        tag, ln = struct.unpack_from(">HH", body, pos)
        pos += 4
        if pos + ln > n:
            raise PduError(ESME_RINVPARLEN, f"TLV 0x{tag:04x} length {ln} past the PDU")
        tlvs[tag] = body[pos : pos + ln]
        pos += ln
    return tlvs


def encode_tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def tlv_int(tlvs: dict[int, bytes], tag: int) -> int | None:
    v = tlvs.get(tag)
    if v is None or not 1 <= len(v) <= 4:
        return None
    return int.from_bytes(v, "big")


# -- bind ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bind:
    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION_34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


def parse_bind(body: bytes) -> Bind:
    system_id, p = _cstring(body, 0, 16, "system_id")
    password, p = _cstring(body, p, 9, "password")
    system_type, p = _cstring(body, p, 13, "system_type")
    version, p = _u8(body, p, "interface_version")
    ton, p = _u8(body, p, "addr_ton")
    npi, p = _u8(body, p, "addr_npi")
    rng, p = _cstring(body, p, 41, "address_range")
    return Bind(system_id, password, system_type, version, ton, npi, rng)


def encode_bind(b: Bind) -> bytes:
    return (b.system_id.encode("latin-1") + b"\0" + b.password.encode("latin-1") + b"\0"
            + b.system_type.encode("latin-1") + b"\0"
            + bytes((b.interface_version, b.addr_ton, b.addr_npi))
            + b.address_range.encode("latin-1") + b"\0")


def encode_bind_resp(system_id: str, *, interface_version: bool = True) -> bytes:
    body = system_id.encode("latin-1")[:15] + b"\0"
    if interface_version:
        body += encode_tlv(TLV_SC_INTERFACE_VERSION, bytes((INTERFACE_VERSION_34,)))
    return body


# -- submit_sm / deliver_sm ---------------------------------------------------------------


@dataclass(slots=True)
class ShortMessage:
    """The fields of submit_sm and deliver_sm (same layout in SMPP 3.4)."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def payload(self) -> bytes:
        """The user data: short_message, or the message_payload TLV when that is used."""
        if not self.short_message and TLV_MESSAGE_PAYLOAD in self.tlvs:
            return self.tlvs[TLV_MESSAGE_PAYLOAD]
        return self.short_message

    @property
    def udhi(self) -> bool:
        return bool(self.esm_class & ESM_UDHI)

    @property
    def is_receipt(self) -> bool:
        return (self.esm_class & ESM_TYPE_MASK) == ESM_DELIVERY_RECEIPT


def _read_head(m: ShortMessage, body: bytes, addr_max: int) -> int:
    """service_type and both addresses (shared by submit_sm, deliver_sm and data_sm)."""
    m.service_type, p = _cstring(body, 0, 6, "service_type")
    m.source_addr_ton, p = _u8(body, p, "source_addr_ton")
    m.source_addr_npi, p = _u8(body, p, "source_addr_npi")
    m.source_addr, p = _cstring(body, p, addr_max, "source_addr")
    m.dest_addr_ton, p = _u8(body, p, "dest_addr_ton")
    m.dest_addr_npi, p = _u8(body, p, "dest_addr_npi")
    m.destination_addr, p = _cstring(body, p, addr_max, "destination_addr")
    return p


def parse_short_message(body: bytes) -> ShortMessage:
    m = ShortMessage()
    p = _read_head(m, body, 21)
    m.esm_class, p = _u8(body, p, "esm_class")
    m.protocol_id, p = _u8(body, p, "protocol_id")
    m.priority_flag, p = _u8(body, p, "priority_flag")
    m.schedule_delivery_time, p = _cstring(body, p, 17, "schedule_delivery_time")
    m.validity_period, p = _cstring(body, p, 17, "validity_period")
    m.registered_delivery, p = _u8(body, p, "registered_delivery")
    m.replace_if_present_flag, p = _u8(body, p, "replace_if_present_flag")
    m.data_coding, p = _u8(body, p, "data_coding")
    m.sm_default_msg_id, p = _u8(body, p, "sm_default_msg_id")
    sm_length, p = _u8(body, p, "sm_length")
    if p + sm_length > len(body):
        raise PduError(ESME_RINVMSGLEN, "sm_length past the PDU")
    m.short_message = body[p : p + sm_length]
    m.tlvs = parse_tlvs(body, p + sm_length)
    if m.short_message and TLV_MESSAGE_PAYLOAD in m.tlvs:
        raise PduError(ESME_RINVOPTPARAMVAL, "both short_message and message_payload")
    return m


def encode_short_message(m: ShortMessage) -> bytes:
    if len(m.short_message) > 254:
        raise ValueError("short_message longer than 254 octets: use message_payload")
    out = bytearray()
    out += m.service_type.encode("latin-1") + b"\0"
    out += bytes((m.source_addr_ton, m.source_addr_npi))
    out += m.source_addr.encode("latin-1") + b"\0"
    out += bytes((m.dest_addr_ton, m.dest_addr_npi))
    out += m.destination_addr.encode("latin-1") + b"\0"
    out += bytes((m.esm_class, m.protocol_id, m.priority_flag))
    out += m.schedule_delivery_time.encode("latin-1") + b"\0"
    out += m.validity_period.encode("latin-1") + b"\0"
    out += bytes((m.registered_delivery, m.replace_if_present_flag, m.data_coding,
                  m.sm_default_msg_id, len(m.short_message)))
    out += m.short_message
    for tag, value in m.tlvs.items():
        out += encode_tlv(tag, value)
    return bytes(out)


def parse_message_id_resp(body: bytes) -> str:
    """The message_id of submit_sm_resp/data_sm_resp (empty when the body is empty)."""
    if not body:
        return ""
    end = body.find(b"\0", 0, 66)
    return body[: end if end >= 0 else min(len(body), 65)].decode("latin-1")


def encode_message_id_resp(message_id: str) -> bytes:
    return message_id.encode("latin-1")[:64] + b"\0"


# -- query_sm / cancel_sm (validated before they are relayed) -------------------------------


def validate_query_sm(body: bytes) -> None:
    p = _cstring(body, 0, 65, "message_id")[1]
    p = _u8(body, p, "source_addr_ton")[1]
    p = _u8(body, p, "source_addr_npi")[1]
    p = _cstring(body, p, 21, "source_addr")[1]
    if p != len(body):
        raise PduError(ESME_RINVCMDLEN, "query_sm: trailing octets", nack=True)


def validate_cancel_sm(body: bytes) -> None:
    p = _cstring(body, 0, 6, "service_type")[1]
    p = _cstring(body, p, 65, "message_id")[1]
    for side in ("source_addr", "destination_addr"):
        p = _u8(body, p, side + "_ton")[1]
        p = _u8(body, p, side + "_npi")[1]
        p = _cstring(body, p, 21, side)[1]
    if p != len(body):
        raise PduError(ESME_RINVCMDLEN, "cancel_sm: trailing octets", nack=True)


VALIDATORS = {QUERY_SM: validate_query_sm, CANCEL_SM: validate_cancel_sm}


def parse_data_sm(body: bytes) -> ShortMessage:
    """data_sm (SMPP 3.4 4.7.2): addresses, esm_class, registered_delivery, data_coding and
    TLVs; the text is in message_payload. Returned as a ShortMessage for one code path."""
    m = ShortMessage()
    p = _read_head(m, body, 65)
    m.esm_class, p = _u8(body, p, "esm_class")
    m.registered_delivery, p = _u8(body, p, "registered_delivery")
    m.data_coding, p = _u8(body, p, "data_coding")
    m.tlvs = parse_tlvs(body, p)
    return m
