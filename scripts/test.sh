#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# The browser tests drive Debian's chromium; the Python worker runs on Debian's grpcio;
# the fuzz targets are built with clang 14's libFuzzer and sanitizers.
install_missing chromium python3 python3-grpcio python3-protobuf openssl curl \
  clang-14 libclang-rt-14-dev
build
if [ -f "$JOBSTREAM_ROOT/tests/js/package.json" ]; then
  echo "== npm ci in tests/js"
  (cd "$JOBSTREAM_ROOT/tests/js" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "== ctest"
(cd "$BUILD_DIR" && ctest -j2 --output-on-failure --timeout 600 --no-tests=error)
# Everything again, built by clang 14 with ASan and UBSan: the whole suite there (label
# "asan"), and each fuzz target for a few seconds (label "fuzz"; the long runs:
# scripts/fuzz.sh).
build_fuzz all
echo "== ctest in $FUZZ_BUILD_DIR (ASan + UBSan, and the fuzz smoke)"
cd "$FUZZ_BUILD_DIR"
ctest -j2 --output-on-failure --timeout 600 --no-tests=error
