#!/usr/bin/env bash
# Runs the built test suite (`swift test --skip-build`), keeps its output in .build/test-run.log, and ends with one
# line: tests passed, failed and skipped (Swift Testing and XCTest together), and the wall time.
set -uo pipefail
swift=${SWIFT:-swift}
log=.build/test-run.log
mkdir -p .build
start=$(date +%s)
"$swift" test --skip-build "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
elapsed=$(( $(date +%s) - start ))
# Swift Testing: one "✔ Test name() passed", "✘ Test name() failed", "➜ Test name() skipped" line per test.
passed=$(grep -E '^✔ Test ' "$log" | grep -vcE '^✔ Test run ')
failed=$(grep -E '^✘ Test ' "$log" | grep -vE '^✘ Test run ' | grep -c 'failed after')
skipped=$(grep -cE '^➜ Test .* skipped' "$log")
# XCTest's own summary (0 when no XCTest cases exist).
xctests=$(grep -E 'Executed [0-9]+ tests?' "$log" | tail -1 | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
echo "make test summary: ${passed} passed, ${failed} failed, ${skipped} skipped (Swift Testing; XCTest executed ${xctests:-0}) in ${elapsed} s; exit ${status}"
exit "$status"
