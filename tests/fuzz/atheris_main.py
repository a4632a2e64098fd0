"""Coverage-guided fuzzing of one target under atheris (libFuzzer):

    python -m tests.fuzz.atheris_main TARGET SECONDS [CORPUS_DIR]

libFuzzer prints `Done N runs in S second(s)` at the end (scripts/fuzz.sh reads it); a crash
prints the traceback, leaves the input in `crash-*` in the current directory and exits non-zero."""

from __future__ import annotations

import sys


def main() -> int:
    import atheris

    name, seconds = sys.argv[1], int(sys.argv[2])
    corpus = sys.argv[3:4]
    with atheris.instrument_imports(include=["gateway", "aiosmtpd"]):
        from tests.fuzz import targets
    target = targets.TARGETS[name]
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-max_len=4096",
                   "-timeout=10", *corpus], target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
