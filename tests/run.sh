#!/bin/sh
# Runs the unit and system runners of one build folder and ends with one line
# "N passed, N failed" (their sum). Exit status is non-zero on any failure.
# Usage: tests/run.sh BUILD_DIR [suite ...]
set -u
build=${1:-build}
shift 2>/dev/null || true
export CONVOY_BIN="$build/convoy"
passed=0
failed=0
status=0
for runner in unit_tests system_tests; do
    out=$(mktemp)
    "$build/$runner" "$@" >"$out" 2>&1
    rc=$?
    cat "$out"
    line=$(grep -E '^[a-z]+: [0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    rm -f "$out"
    if [ -z "$line" ]; then
        echo "run: $runner ended without a summary (exit status $rc)" >&2
        failed=$((failed + 1))
        status=1
        continue
    fi
    if [ "$rc" != 0 ] && [ "$rc" != 1 ]; then
        # The runner itself failed after its tests (a sanitizer's leak report
        # at exit): count that as one more failure.
        echo "run: $runner exited with status $rc after its summary" >&2
        failed=$((failed + 1))
        status=1
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) failed/\1/')
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$f" = 0 ] || status=1
done
echo "$passed passed, $failed failed"
exit $status
