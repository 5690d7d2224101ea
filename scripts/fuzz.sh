#!/usr/bin/env bash
# Long fuzz runs (bench, not CI): each target for SECONDS (default 1800) or until it has
# run RUNS inputs (default 10 million), from the committed seeds, new inputs kept in
# build-fuzz/corpus/NAME. Prints each target's last libFuzzer status line (runs, coverage,
# exec/s). A crash stops that target and leaves crash-* in build-fuzz.
#   scripts/fuzz.sh [SECONDS] [RUNS]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SECONDS_EACH="${1:-1800}"
RUNS="${2:-10000000}"
install_missing clang-14 libclang-rt-14-dev
build_fuzz
cd "$FUZZ_BUILD_DIR"
for target in "${FUZZ_TARGETS[@]}"; do
  name="${target%_fuzzer}"
  mkdir -p "corpus/$name"
  echo "== $target: up to ${SECONDS_EACH}s or $RUNS runs"
  "tests/fuzz/$target" -max_total_time="$SECONDS_EACH" -runs="$RUNS" -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 "corpus/$name" "$JOBSTREAM_ROOT/tests/fuzz/corpus/$name" \
    2>&1 | grep -E '^#[0-9]+.*(DONE|pulse)|^stat::|ERROR|SUMMARY' | tail -8
done
