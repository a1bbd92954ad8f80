#!/bin/sh
# Run each libFuzzer harness for a while and print what it did.
#   tests/fuzz/run.sh SECONDS BUILDDIR NAME...     (make fuzz runs this)
# For each NAME: BUILDDIR/fuzz_NAME runs for SECONDS (-max_total_time) on a
# working corpus BUILDDIR/corpus/NAME/ (new inputs go there) seeded from
# tests/fuzz/corpus/NAME/ (only read), with tests/fuzz/NAME.dict as its
# dictionary and the flags of tests/fuzz/NAME.options when they exist. Crash,
# leak, timeout and OOM inputs go to BUILDDIR/artifacts/NAME/, the full output
# to BUILDDIR/logs/NAME.log. Nothing is written into the source tree.
# Prints a table of executions and crashes; exit 1 if any harness crashed.
set -u

[ $# -ge 3 ] || { echo "usage: $0 SECONDS BUILDDIR NAME..." >&2; exit 2; }
secs=$1
b=$2
shift 2
src=$(dirname "$0")

case $secs in
'' | *[!0-9]*) echo "fuzz: FUZZ_SECONDS must be a number of seconds, not '$secs'" >&2; exit 2 ;;
esac

# the harness's own checks abort; sanitizers stop at the first report
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:print_stacktrace=1:halt_on_error=1"

mkdir -p "$b/logs"
stamp=$b/logs/.start
table=$b/logs/summary.txt
: >"$table"
failed=0
total_execs=0

for name in "$@"; do
    bin=$b/fuzz_$name
    work=$b/corpus/$name
    art=$b/artifacts/$name
    log=$b/logs/$name.log
    mkdir -p "$work" "$art"
    [ -x "$bin" ] || { echo "fuzz: $bin is not built" >&2; exit 2; }
    set -- -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$art/"
    [ -f "$src/$name.dict" ] && set -- "$@" -dict="$src/$name.dict"
    if [ -f "$src/$name.options" ]; then
        # shellcheck disable=SC2046
        set -- "$@" $(grep -v '^#' "$src/$name.options")
    fi
    printf '=== fuzz_%s for %ss\n' "$name" "$secs"
    touch "$stamp"
    "$bin" "$@" "$work" "$src/corpus/$name" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then # killed before the final stats: the last status line
        execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    fi
    execs=${execs:-0}
    crashes=$(find "$art" -type f -newer "$stamp" | wc -l | tr -d ' ')
    corpus=$(find "$work" -type f | wc -l | tr -d ' ')
    status=ok
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=$((failed + 1))
        status="FAILED (exit $rc)"
        [ "$crashes" -ne 0 ] || crashes="?"
        echo "--- fuzz_$name: the end of $log:"
        tail -n 40 "$log"
        find "$art" -type f -newer "$stamp" | while read -r f; do
            echo "--- reproduce: $bin $f"
        done
    fi
    total_execs=$((total_execs + execs))
    printf '%-12s %12s %8s %8s  %s\n' "$name" "$execs" "$crashes" "$corpus" "$status" >>"$table"
    printf -- '--- fuzz_%s: %s executions, %s crashes, exit %s\n' "$name" "$execs" "$crashes" "$rc"
done
rm -f "$stamp"

echo
echo "fuzz summary (${secs}s per harness; inputs in $b/corpus, artifacts in $b/artifacts):"
printf '%-12s %12s %8s %8s  %s\n' harness executions crashes corpus status
cat "$table"
printf '%-12s %12s\n' total "$total_execs"
if [ "$failed" -ne 0 ]; then
    echo "fuzz: $failed harness(es) crashed"
    exit 1
fi
