#!/bin/sh
# Runs each libFuzzer target for a while (make fuzz):
#
#   sh t/fuzz/run.sh SECONDS BUILD_DIR NAME...
#
# BUILD_DIR/fuzz_NAME runs on BUILD_DIR/work/NAME, a fresh copy of
# t/fuzz/corpus/NAME: what it finds there is thrown away next time, the
# seeds in the repository stay as they are.  Prints each target's exec
# count (libFuzzer's stat::number_of_executed_units) and fails when a
# target crashes, leaks, breaks a property or times out; the input is
# kept as BUILD_DIR/NAME-crash-* (or NAME-leak-*, -timeout-, -oom-).
set -u

seconds=$1
build=$2
shift 2

status=0

for name in "$@"; do
    work="$build/work/$name"
    log="$build/fuzz_$name.log"

    rm -rf "$work"
    mkdir -p "$work"
    cp t/fuzz/corpus/"$name"/* "$work"/

    "$build/fuzz_$name" -max_total_time="$seconds" -print_final_stats=1 \
        -max_len=4096 -timeout=10 -artifact_prefix="$build/$name-" \
        "$work" > "$log" 2>&1
    rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" \
            | tail -1)

    if [ "$rc" = 0 ]; then
        printf 'fuzz_%-8s %12s execs in %s s, %s inputs in %s\n' \
            "$name" "${execs:-?}" "$seconds" "$(ls "$work" | wc -l)" "$work"
    else
        printf 'fuzz_%-8s FAILED (exit %s) after %s execs, log %s\n' \
            "$name" "$rc" "${execs:-?}" "$log"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*property failed)' "$log" \
            | head -5
        for input in $(sed -n 's/^.*Test unit written to //p' "$log"); do
            echo "  input: $input"
            echo "  rerun: $build/fuzz_$name $input"
        done
        status=1
    fi
done

exit $status
