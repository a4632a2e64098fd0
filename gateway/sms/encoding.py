"""SMS text encodings: GSM 03.38 (default alphabet, extension table and national shift tables),
UCS-2/UTF-16, Latin-1, IA5 and binary, selected by SMPP `data_coding`; and the User Data
Header (UDH) of concatenated messages.

SMPP carries GSM 7-bit text unpacked (one septet per octet) in `short_message`; packed septets
(as on the air interface) are decoded by `unpack_septets` for callers that have them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# GSM 03.38 default alphabet (3GPP TS 23.038 6.2.1); index = septet value.
GSM_DEFAULT = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(GSM_DEFAULT) == 128
ESC = 0x1B

# Extension table (default), reached through ESC.
GSM_EXTENSION = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
                 0x3E: "]", 0x40: "|", 0x65: "€"}

# National single shift tables (TS 23.038 A.2), the ones useful for the markets we target:
# language id (from the UDH IE 0x24) -> extension table overrides.
NATIONAL_SINGLE_SHIFT: dict[int, dict[int, str]] = {
    1: {0x07: "ı", 0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[",  # Turkish  # noqa: RUF001
        0x3D: "~", 0x3E: "]", 0x40: "|", 0x47: "Ğ", 0x49: "İ", 0x53: "Ş", 0x63: "ç",
        0x65: "€", 0x67: "ğ", 0x69: "ı", 0x73: "ş"},  # noqa: RUF001
    2: {0x09: "ç", 0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[",  # Spanish
        0x3D: "~", 0x3E: "]", 0x40: "|", 0x41: "Á", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú",
        0x61: "á", 0x65: "€", 0x69: "í", 0x6F: "ó", 0x75: "ú"},
}

_GSM_REVERSE = {ch: i for i, ch in enumerate(GSM_DEFAULT)}
_GSM_EXT_REVERSE = {ch: i for i, ch in GSM_EXTENSION.items()}


class Coding(StrEnum):
    GSM7 = "gsm7"
    ASCII = "ascii"
    LATIN1 = "latin1"
    UCS2 = "ucs2"
    BINARY = "binary"
    OTHER = "other"


# SMPP 3.4 5.2.19 data_coding -> (Coding, Python codec for the 'OTHER' ones)
_SMPP_CODINGS: dict[int, tuple[Coding, str]] = {
    0x00: (Coding.GSM7, ""),
    0x01: (Coding.ASCII, "ascii"),
    0x02: (Coding.BINARY, ""),
    0x03: (Coding.LATIN1, "latin-1"),
    0x04: (Coding.BINARY, ""),
    0x05: (Coding.OTHER, "shift_jis"),  # JIS (X 0208-1990); SMSCs send Shift_JIS here
    0x06: (Coding.OTHER, "iso8859_5"),
    0x07: (Coding.OTHER, "iso8859_8"),
    0x08: (Coding.UCS2, "utf-16-be"),
    0x0D: (Coding.OTHER, "shift_jis"),  # extended Kanji JIS (X 0212-1990)
    0x0E: (Coding.OTHER, "euc_kr"),  # KS C 5601
}


def classify(data_coding: int) -> tuple[Coding, str]:
    """The alphabet of an SMPP/GSM data_coding value (including the GSM DCS groups)."""
    dc = data_coding & 0xFF
    if dc in _SMPP_CODINGS:
        return _SMPP_CODINGS[dc]
    group = dc >> 4
    if group in (0x0, 0x1, 0x2, 0x3):  # general data coding (bits 3..2: alphabet)
        alpha = (dc >> 2) & 0x03
    elif group == 0xF:  # data coding / message class: bit 2: 0 = GSM 7-bit, 1 = 8-bit
        alpha = 1 if dc & 0x04 else 0
    elif group in (0xC, 0xD):  # MWI, GSM 7-bit
        alpha = 0
    elif group == 0xE:  # MWI, UCS2
        alpha = 2
    else:
        return Coding.BINARY, ""
    return ((Coding.GSM7, ""), (Coding.BINARY, ""), (Coding.UCS2, "utf-16-be"),
            (Coding.BINARY, ""))[alpha]


# octet (the high bit ignored, as in the loop below) -> character, for str.translate
_GSM_TRANSLATE = {i: GSM_DEFAULT[i & 0x7F] for i in range(256)}


def decode_gsm7(data: bytes, *, shift_table: int = 0) -> str:
    """Unpacked GSM 03.38 septets (one per octet) -> text. An unknown escape gives the
    default-alphabet character after it (as 23.038 says); a trailing ESC is dropped."""
    if ESC not in data and (ESC | 0x80) not in data:  # the common case, in C
        return data.decode("latin-1").translate(_GSM_TRANSLATE)
    ext = NATIONAL_SINGLE_SHIFT.get(shift_table, GSM_EXTENSION)
    out: list[str] = []
    i = 0
    n = len(data)
    table = GSM_DEFAULT
    while i < n:
        c = data[i] & 0x7F
        if c == ESC:
            i += 1
            if i >= n:
                break
            c2 = data[i] & 0x7F
            out.append(ext.get(c2, table[c2] if c2 != ESC else " "))
        else:
            out.append(table[c])
        i += 1
    return "".join(out)


def encode_gsm7(text: str) -> bytes | None:
    """Text -> unpacked GSM 03.38 septets, or None when the text is not GSM-representable."""
    out = bytearray()
    for ch in text:
        i = _GSM_REVERSE.get(ch)
        if i is not None:
            out.append(i)
            continue
        j = _GSM_EXT_REVERSE.get(ch)
        if j is None:
            return None
        out += bytes((ESC, j))
    return bytes(out)


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """Packed 7-bit (air interface) -> one septet per octet; `fill_bits` skipped first."""
    out = bytearray()
    bits = fill_bits
    for _ in range(count):
        byte_i, bit_i = divmod(bits, 8)
        if byte_i >= len(data):
            break
        v = data[byte_i] >> bit_i
        if bit_i > 1 and byte_i + 1 < len(data):
            v |= data[byte_i + 1] << (8 - bit_i)
        out.append(v & 0x7F)
        bits += 7
    return bytes(out)


def decode_payload(data: bytes, data_coding: int, *, shift_table: int = 0) -> str:
    """User data (without UDH) -> text. Binary data is shown as hex, never guessed at."""
    coding, codec = classify(data_coding)
    if coding is Coding.GSM7:
        return decode_gsm7(data, shift_table=shift_table)
    if coding is Coding.BINARY:
        return data.hex()
    if coding is Coding.UCS2:
        # UCS-2 is UTF-16 without surrogates; real handsets send UTF-16 (emoji): decode UTF-16
        return data[: len(data) & ~1].decode("utf-16-be", "replace")
    return data.decode(codec, "replace")


# -- UDH ---------------------------------------------------------------------------------

IE_CONCAT_8 = 0x00
IE_CONCAT_16 = 0x08
IE_PORT_16 = 0x05
IE_SINGLE_SHIFT = 0x24
IE_LOCKING_SHIFT = 0x25


@dataclass(frozen=True, slots=True)
class Udh:
    concat_ref: int | None = None
    concat_total: int = 0
    concat_seq: int = 0
    dest_port: int | None = None
    shift_table: int = 0
    length: int = 0  # octets of the UDH including its length octet


def parse_udh(data: bytes) -> Udh | None:
    """The UDH at the start of `data`, or None when it is malformed."""
    if not data:
        return None
    udhl = data[0]
    if udhl + 1 > len(data):
        return None
    pos, end = 1, udhl + 1
    ref: int | None = None
    total = seq = 0
    port: int | None = None
    shift = 0
    while pos + 2 <= end:
        iei, iel = data[pos], data[pos + 1]
        v = data[pos + 2 : pos + 2 + iel]
        if pos + 2 + iel > end:
            return None
        if iei == IE_CONCAT_8 and iel == 3:
            ref, total, seq = v[0], v[1], v[2]
        elif iei == IE_CONCAT_16 and iel == 4:
            ref, total, seq = (v[0] << 8) | v[1], v[2], v[3]
        elif iei == IE_PORT_16 and iel == 4:
            port = (v[0] << 8) | v[1]
        elif iei == IE_SINGLE_SHIFT and iel == 1:
            shift = v[0]
        pos += 2 + iel
    if ref is not None and (total == 0 or seq == 0 or seq > total):
        ref = None  # 23.040: ignore an invalid concatenation IE
    return Udh(ref, total, seq, port, shift, udhl + 1)


def concat_udh(ref: int, total: int, seq: int) -> bytes:
    return bytes((5, IE_CONCAT_8, 3, ref & 0xFF, total, seq))
