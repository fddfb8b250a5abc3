#!/usr/bin/env bash
# Run the real-mode comparison tests N times while both cores are kept busy, and print how each
# run went: the check that real-vs-simulator agreement holds on a loaded machine.
#
#   scripts/real-under-load.sh [N]          # N runs, default 10
#   PYTEST_ARGS='-k burst' scripts/real-under-load.sh 3
#
# Load: stress-ng (--cpu 2) if installed, else two Python busy loops; both are started here,
# killed by PID on exit (also on Ctrl-C or an error). Tests: tests/test_compare.py and
# tests/test_real_runner.py (the real-Redis ones too: they start their own redis-server), or
# what PYTEST_ARGS selects. Prints one line per run and a table of the totals at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
N="${1:-10}"
if ! [[ "$N" =~ ^[1-9][0-9]*$ ]]; then
    echo "real-under-load: N must be a positive integer, got '$N'" >&2
    exit 2
fi
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
TESTS=(tests/test_compare.py tests/test_real_runner.py)
read -r -a EXTRA <<< "${PYTEST_ARGS:-}"

LOAD_PIDS=()
stop_load() {
    for pid in "${LOAD_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    LOAD_PIDS=()
}
trap stop_load EXIT
trap 'stop_load; exit 130' INT TERM

if command -v stress-ng >/dev/null 2>&1; then
    stress-ng --cpu 2 --quiet >/dev/null 2>&1 &
    LOAD_PIDS+=("$!")
    load="stress-ng --cpu 2"
else
    for _ in 1 2; do
        "$PY" -c 'while True: pass' &
        LOAD_PIDS+=("$!")
    done
    load="two Python busy loops"
fi
echo "load: $load (PIDs ${LOAD_PIDS[*]}); $N run(s) of ${TESTS[*]} ${EXTRA[*]:-}"

log_dir=$(mktemp -d)
total_pass=0
total_fail=0
runs_green=0
rows=()
for i in $(seq 1 "$N"); do
    start=$(date +%s)
    PATH="$PWD/.venv/bin:$PATH" TQDM_DISABLE=1 "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "${EXTRA[@]}" \
        >"$log_dir/run$i.log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    summary=$(grep -E '^[=]* ?[0-9]+ (passed|failed)|(passed|failed).* in [0-9.]+s' "$log_dir/run$i.log" | tail -1 | tr -d '=' | sed 's/^ *//')
    passed=$(grep -oE '[0-9]+ passed' <<< "$summary" | grep -oE '[0-9]+' || echo 0)
    failed=$(grep -oE '[0-9]+ (failed|error)' <<< "$summary" | grep -oE '[0-9]+' | paste -sd+ | bc 2>/dev/null || echo 0)
    [ -z "$passed" ] && passed=0
    [ -z "$failed" ] && failed=0
    total_pass=$((total_pass + passed))
    total_fail=$((total_fail + failed))
    [ "$rc" = 0 ] && runs_green=$((runs_green + 1))
    failing=$(grep -E '^(FAILED|ERROR) ' "$log_dir/run$i.log" | sed -E 's/^(FAILED|ERROR) //; s/ - .*//' | paste -sd' ' -)
    rows+=("| $i | $passed | $failed | ${secs} s | ${failing:--} |")
    echo "run $i: $passed passed, $failed failed in ${secs} s ${failing:+($failing)}"
done
stop_load
echo
echo "| run | passed | failed | time | failing tests |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "$runs_green of $N runs green; logs in $log_dir"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
