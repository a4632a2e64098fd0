"""SMS understanding shared by the SMPP proxy, the HTTP hook and the SMS checks: encodings,
concatenation, sender types, the operator's sender-ID registry and flood counters."""
