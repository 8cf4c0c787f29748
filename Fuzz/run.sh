#!/usr/bin/env bash
# Builds every libFuzzer target with AddressSanitizer, runs each for FUZZ_SECONDS on a work corpus seeded from
# Fuzz/corpus/<target>, and prints per target: executions, executions per second, corpus size, findings.
# Exits non-zero when any target has a finding (a crash, timeout or out-of-memory input in Fuzz/runs/<target>/findings).
#
#   FUZZ_SECONDS   seconds per target (default 600; `make fuzz-smoke` uses 30)
#   FUZZ_TARGETS   space-separated subset (default: all six)
#   FUZZ_RUNS      also stop each target after this many executions (optional; whichever comes first)
#   FUZZ_NO_BUILD  set: run the binaries already built (several runs side by side share one build)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 10); libFuzzer measures wall
#                  time, so a run niced on a busy machine wants more
#
# A finding replays without libFuzzer: `swift build --product NAME` gives a replayer; `.build/debug/NAME FILE`.
# `.build/debug/NAME --seeds DIR` writes a target's generated seeds (the SK and encrypted-message targets build
# theirs from the engines' own messages; Fuzz/corpus holds them with strongSwan's captured packets).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${FUZZ_SECONDS:-600}
budget="$SECONDS_PER_TARGET s"
if [ -n "${FUZZ_RUNS:-}" ]; then budget="$FUZZ_RUNS runs or $SECONDS_PER_TARGET s"; fi
TARGETS=${FUZZ_TARGETS:-"fuzz-ikev2-message fuzz-isakmp-message fuzz-ikev2-sk fuzz-ikev1-encrypted fuzz-esp fuzz-config"}
SWIFT=${SWIFT:-swift}
SCRATCH=.build-fuzz
WORK=Fuzz/runs

# Longest input per target: a datagram fits a 1500-octet MTU with room to spare; the SK and encrypted-message
# targets take the inner chain; a configuration is a page or two.
max_len() {
    case "$1" in
        fuzz-ikev2-message | fuzz-isakmp-message) echo 2048 ;;
        fuzz-ikev2-sk | fuzz-ikev1-encrypted) echo 1500 ;;
        fuzz-esp) echo 1600 ;;
        fuzz-config) echo 4096 ;;
        *) echo "unknown fuzz target $1" >&2; exit 2 ;;
    esac
}

# SwiftPM passes --sanitize=fuzzer and --sanitize=address to swiftc as two flags in no fixed order, and swiftc
# honours only the last -sanitize= flag: a build gets either coverage or ASan, never both (swiftc -c on one file:
# "-sanitize=fuzzer -sanitize=address" has no __sancov sections, the other order no __asan calls). The combined
# flag, last on the line, gives both; SwiftPM's own flags still link libFuzzer and the ASan runtime.
# Release (whole-module -O) measured against debug -O, both with both sanitizers, fuzz-ikev2-message, 20 s on the
# shared 2-core machine: 27k vs 14k exec/s. -enable-testing: the engine targets' @testable imports need it.
build_flags=(--scratch-path "$SCRATCH" -c release --sanitize=fuzzer --sanitize=address
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing -Xswiftc -DVIGIL_LIBFUZZER)

build_start=$(date +%s)
for target in $([ -n "${FUZZ_NO_BUILD:-}" ] || echo "$TARGETS"); do
    echo "== building $target (release, fuzzer + address sanitizer)"
    mkdir -p "$WORK"
    if ! "$SWIFT" build "${build_flags[@]}" --product "$target" > "$WORK/build.log" 2>&1; then
        grep -E "error" "$WORK/build.log" >&2 || tail -20 "$WORK/build.log" >&2
        echo "build of $target failed" >&2
        exit 1
    fi
done
echo "== sanitizer builds took $(( $(date +%s) - build_start )) s"

summary=()
findings_total=0
for target in $TARGETS; do
    corpus="$WORK/$target/corpus"
    findings="$WORK/$target/findings"
    log="$WORK/$target/last-run.log"
    mkdir -p "$corpus" "$findings"
    limit=(-max_total_time="$SECONDS_PER_TARGET")
    if [ -n "${FUZZ_RUNS:-}" ]; then limit+=(-runs="$FUZZ_RUNS"); fi
    echo "== fuzzing $target for $budget"
    dictionary=()
    if [ -f "Fuzz/dict/$target.dict" ]; then dictionary=(-dict="Fuzz/dict/$target.dict"); fi
    # Leak detection is off: objects the targets build once at start-up (the established sessions) read as leaks
    # to LeakSanitizer at exit; growth per input is bounded by -rss_limit_mb instead. Short allocation stacks and a
    # small quarantine: ASan's stack depot was the largest single cost in a profile of fuzz-ikev2-sk.
    set +e
    ASAN_OPTIONS=detect_leaks=0:malloc_context_size=4:quarantine_size_mb=16 SWIFT_BACKTRACE=enable=no "$SCRATCH/release/$target" \
        -max_len="$(max_len "$target")" "${limit[@]}" "${dictionary[@]}" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -detect_leaks=0 \
        -print_final_stats=1 -artifact_prefix="$findings/" "$corpus" "Fuzz/corpus/$target" > "$log" 2>&1
    status=$?
    set -e
    executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | head -1 || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | head -1 || true)
    size=$(find "$corpus" -type f | wc -l)
    found=$(find "$findings" -type f | wc -l)
    if [ "$status" -ne 0 ] && [ "$found" -eq 0 ]; then
        echo "$target: libFuzzer exited with $status and left no finding; see $log" >&2
        tail -20 "$log" >&2
        found=1
    fi
    findings_total=$((findings_total + found))
    line=$(printf '%-22s executions %10s  exec/s %7s  corpus %5s  findings %s' "$target" "$executions" "$rate" "$size" "$found")
    echo "$line"
    summary+=("$line")
    if [ "$found" -gt 0 ]; then
        find "$findings" -type f | sed 's/^/    finding: /'
        grep -m1 -E "Fatal error|ERROR: AddressSanitizer|ERROR: libFuzzer|deadly signal" "$log" | sed 's/^/    /' || true
    fi
done

echo "== fuzz summary ($budget per target)"
printf '%s\n' "${summary[@]}"
if [ "$findings_total" -gt 0 ]; then
    echo "fuzzing found $findings_total problem(s): every finding becomes a regression test and a fix" >&2
    exit 1
fi
