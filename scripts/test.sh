#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# The browser tests drive Debian's chromium; the Python worker runs on Debian's grpcio.
install_missing chromium python3 python3-grpcio python3-protobuf openssl curl
build
if [ -f "$JOBSTREAM_ROOT/tests/js/package.json" ]; then
  echo "== npm ci in tests/js"
  (cd "$JOBSTREAM_ROOT/tests/js" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "== ctest"
cd "$BUILD_DIR"
ctest -j2 --output-on-failure --timeout 600 --no-tests=error
