#!/usr/bin/env bash
# Run the real-mode comparison tests N times while both cores are kept busy, and print how each
# run went: the check that real-vs-simulator agreement holds on a loaded machine.
#
#   scripts/real-under-load.sh [N]          # N runs (default 10) of the fourteen tests below
#   ALL=1 scripts/real-under-load.sh 3      # every test of test_compare.py, test_real_runner.py, test_compare_bytes.py
#   PYTEST_ARGS='-k fakeredis' scripts/real-under-load.sh 3
#
# The fourteen tests: the three 20 kB burst scenarios (drop_newest, drop_oldest, disconnect), whose
# latency is the sum of ~50 drains and so the most sensitive to a loaded machine, compared on
# fakeredis and on real Redis, and through the CLI on real Redis; Redis's output-buffer limit
# (its amount lost, and the CLI on it), whose rate-capped reader a loaded machine slows; the burst replayed row by row
# against the simulator; the CLI flagging a model that is really wrong (so the tolerance
# has not become blind); and slow_mobile_bytes (sockets counted in bytes, whose real holding
# varies run to run) on both backends.
#
# Load: stress-ng (--cpu 2) if installed, else two Python busy loops; both are started here,
# killed by PID on exit (also on Ctrl-C or an error). The real-Redis tests start their own
# redis-server. Prints one line per run, then a table per run and a table per test.
set -uo pipefail
cd "$(dirname "$0")/.."
N="${1:-10}"
if ! [[ "$N" =~ ^[1-9][0-9]*$ ]]; then
    echo "real-under-load: N must be a positive integer, got '$N'" >&2
    exit 2
fi
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
if [ -n "${ALL:-}" ]; then
    TESTS=(tests/test_compare.py tests/test_real_runner.py tests/test_compare_bytes.py)
else
    TESTS=(
        "tests/test_compare.py::test_deterministic_burst_agrees_exactly[fakeredis]"
        "tests/test_compare.py::test_deterministic_burst_agrees_exactly[redis]"
        "tests/test_compare.py::test_drop_oldest_burst_agrees_event_by_event[fakeredis]"
        "tests/test_compare.py::test_drop_oldest_burst_agrees_event_by_event[redis]"
        "tests/test_compare.py::test_disconnect_burst_agrees_event_by_event[fakeredis]"
        "tests/test_compare.py::test_disconnect_burst_agrees_event_by_event[redis]"
        "tests/test_compare.py::test_cli_compare_on_real_redis_exits_0[real_burst_drop_oldest]"
        "tests/test_compare.py::test_cli_compare_on_real_redis_exits_0[real_burst_disconnect]"
        "tests/test_compare.py::test_cli_compare_on_real_redis_exits_0[real_output_limit]"
        "tests/test_compare.py::test_output_limit_losses_on_real_redis"
        "tests/test_compare.py::test_cli_compare_exits_1_naming_the_metric"
        "tests/test_real_runner.py::test_exact_burst_matches_the_simulator_row_by_row[fakeredis]"
        "tests/test_compare_bytes.py::test_compare_agrees_on_fakeredis"
        "tests/test_compare_bytes.py::test_compare_agrees_on_redis"
    )
fi
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
echo "load: $load (PIDs ${LOAD_PIDS[*]}); $N run(s) of ${#TESTS[@]} test target(s) ${EXTRA[*]:-}"

log_dir=$(mktemp -d)
total_pass=0
total_fail=0
runs_green=0
rows=()
declare -A test_pass=()
declare -A test_fail=()
test_order=()
for i in $(seq 1 "$N"); do
    start=$(date +%s)
    PATH="$PWD/.venv/bin:$PATH" TQDM_DISABLE=1 "$PY" -m pytest -q -rA -p no:cacheprovider "${TESTS[@]}" "${EXTRA[@]}" \
        >"$log_dir/run$i.log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    passed=$(grep -cE '^PASSED ' "$log_dir/run$i.log")
    failed=$(grep -cE '^(FAILED|ERROR) ' "$log_dir/run$i.log")
    total_pass=$((total_pass + passed))
    total_fail=$((total_fail + failed))
    [ "$rc" = 0 ] && runs_green=$((runs_green + 1))
    while read -r verdict test; do
        [ -z "$test" ] && continue
        [ -z "${test_pass[$test]+x}" ] && { test_order+=("$test"); test_pass[$test]=0; test_fail[$test]=0; }
        if [ "$verdict" = PASSED ]; then
            test_pass[$test]=$(( test_pass[$test] + 1 ))
        else
            test_fail[$test]=$(( test_fail[$test] + 1 ))
        fi
    done < <(grep -E '^(PASSED|FAILED|ERROR) ' "$log_dir/run$i.log" | sed -E 's/ - .*//')
    failing=$(grep -E '^(FAILED|ERROR) ' "$log_dir/run$i.log" | sed -E 's/^(FAILED|ERROR) //; s/ - .*//; s/^tests\///' | paste -sd' ' -)
    verdict=$([ "$rc" = 0 ] && echo pass || echo FAIL)
    rows+=("| $i | $verdict | $passed | $failed | ${secs} s | ${failing:--} |")
    echo "run $i: $verdict, $passed passed, $failed failed in ${secs} s ${failing:+($failing)}"
done
stop_load
echo
echo "| run | result | passed | failed | time | failing tests |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "| test | runs passed |"
echo "|---|---|"
for t in "${test_order[@]}"; do
    echo "| \`${t#tests/}\` | ${test_pass[$t]} of $(( test_pass[$t] + test_fail[$t] )) |"
done
echo
echo "$runs_green of $N runs fully passed; $total_pass passed, $total_fail failed; logs in $log_dir"
[ "$runs_green" = "$N" ]
