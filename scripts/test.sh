#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest: the suite as built
# by gcc, then everything again built by clang 14 with ASan and UBSan (the suite labelled
# "asan", and each fuzz target for a few seconds, labelled "fuzz"; the long runs:
# scripts/fuzz.sh). Prints how long each step took.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# Most tests wait on servers, workers and browsers rather than compute: four at a time keep
# two cores busy (measured: the plain suite in 3 min at -j4, 4 at -j2).
TEST_JOBS="${TEST_JOBS:-4}"

step() {  # NAME COMMAND...: runs it and says how long it took
  local name="$1" start=$SECONDS
  shift
  "$@"
  echo "== $name took $((SECONDS - start)) s"
}

run_ctest() {  # BUILD_DIR
  echo "== ctest in $1"
  (cd "$1" && ctest "-j$TEST_JOBS" --output-on-failure --timeout 600 --no-tests=error)
}

# The browser tests drive Debian's chromium; the Python worker runs on Debian's grpcio;
# the fuzz targets are built with clang 14's libFuzzer and sanitizers.
step install install_missing chromium python3 python3-grpcio python3-protobuf openssl curl \
  clang-14 libclang-rt-14-dev
step build build
if [ -f "$JOBSTREAM_ROOT/tests/js/package.json" ]; then
  echo "== npm ci in tests/js"
  (cd "$JOBSTREAM_ROOT/tests/js" && npm ci --no-audit --no-fund --loglevel=error)
fi
step ctest run_ctest "$BUILD_DIR"
step "sanitizer build" build_fuzz all
step "sanitizer ctest (ASan + UBSan, and the fuzz smoke)" run_ctest "$FUZZ_BUILD_DIR"
echo "== scripts/test.sh took $SECONDS s"
