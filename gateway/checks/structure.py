"""Email structure and header anomalies (cheap, inline)."""

from __future__ import annotations

from gateway.message import Channel, ScanContext, lower_names
from gateway.pipeline import Check, Stage
from gateway.verdict import Symbol, SymbolSpec


class EmailStructureCheck(Check):
    name = "email_structure"
    stage = Stage.PRE
    channels = frozenset({Channel.EMAIL})
    symbols = (
        SymbolSpec("MISSING_FROM", "headers", "the message has no From header", 2.0),
        SymbolSpec("MISSING_DATE", "headers", "the message has no Date header", 0.5),
        SymbolSpec("MISSING_MID", "headers", "the message has no Message-ID header", 0.5),
        SymbolSpec("MULTIPLE_FROM", "headers", "the message has several From headers", 3.0),
        SymbolSpec("MIME_DEFECTS", "mime", "the MIME structure is broken", 1.0),
        SymbolSpec("EMPTY_MESSAGE", "mime", "the message has neither headers nor text", 1.0),
    )

    def run(self, ctx: ScanContext) -> list[Symbol]:
        m = ctx.message
        names = lower_names(m.headers)
        out: list[Symbol] = []
        if not m.headers and not m.body.strip():
            return [Symbol("EMPTY_MESSAGE")]
        nfrom = names.count("from")
        if nfrom == 0:
            out.append(Symbol("MISSING_FROM"))
        elif nfrom > 1:
            out.append(Symbol("MULTIPLE_FROM", 1.0, (str(nfrom),)))
        if "date" not in names:
            out.append(Symbol("MISSING_DATE"))
        if "message-id" not in names:
            out.append(Symbol("MISSING_MID"))
        if m.size <= 5_000_000:
            defects = {type(d).__name__ for d in ctx.mime.defects}
            for part in ctx.mime.walk():
                defects.update(type(d).__name__ for d in part.defects)
                if len(defects) > 5:
                    break
            if defects:
                out.append(Symbol("MIME_DEFECTS", 1.0, tuple(sorted(defects))[:5]))
        return out
