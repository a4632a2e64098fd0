#!/usr/bin/env bash
# Coverage-guided fuzzing (atheris) of every parser that reads attacker-controlled bytes.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, all targets)
# Prints each target's execution count; exits non-zero if any target crashed (the crashing
# input is kept under .fuzz/crashes/TARGET/ for a regression test). Corpora persist in .fuzz/.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
SECONDS_PER=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(milter smpp smtp mime urls sms_json)
"$PY" -c "import atheris" 2>/dev/null || "$PY" -m pip install -q atheris
total=0 crashes=0
printf '%-10s %12s %8s %s\n' target executions seconds result
for t in "${TARGETS[@]}"; do
  corpus=$ROOT/.fuzz/corpus/$t work=$ROOT/.fuzz/crashes/$t
  mkdir -p "$corpus" "$work"
  log=$ROOT/.fuzz/$t.log
  (cd "$work" && PYTHONPATH=$ROOT "$PY" -m tests.fuzz.atheris_main "$t" "$SECONDS_PER" "$corpus") >"$log" 2>&1
  rc=$?
  runs=$(grep -aoE 'Done [0-9]+ runs in [0-9]+' "$log" | tail -1 | awk '{print $2" "$5}')
  [ -z "$runs" ] && runs=$(grep -aoE '^#[0-9]+' "$log" | tail -1 | tr -d '#')" ?"
  n=${runs%% *} s=${runs##* }
  if [ $rc -ne 0 ]; then
    result="CRASH (see $log, input in $work)"; crashes=$((crashes + 1))
  else
    result=ok
  fi
  printf '%-10s %12s %8s %s\n' "$t" "$n" "$s" "$result"
  total=$((total + ${n:-0}))
done
echo "total: $total executions, $crashes open crashes"
[ $crashes -eq 0 ]
