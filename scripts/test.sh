#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest: the suite as built
# by gcc, then everything again built by clang 14 with ASan and UBSan (the suite labelled
# "asan", and each fuzz target for a few seconds, labelled "fuzz"; the long runs:
# scripts/fuzz.sh). Prints how long each step took.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# Most tests wait on servers, workers and browsers rather than compute: eight at a time
# keep two cores busy (measured, the plain suite: 160 s at -j4 with the cores 68% busy;
# 136 s in memory at -j4, 41% idle; 87 s in memory at -j8, 11% idle).
TEST_JOBS="${TEST_JOBS:-8}"

# The tests' files (stores, PostgreSQL's data, artifacts, browser profiles) go in memory
# when /dev/shm has room for them: on disk, the kernel's work creating and deleting them
# (ext4's inode allocation, in perf) cost the plain suite a quarter of its CPU (218 CPU-s
# at -j4 on disk, 160 in memory). What the tests check of durability — nothing acknowledged is
# lost when a process is killed — holds the same there (what survives the loss of the
# machine no test can check). TEST_TMPDIR=/some/dir puts them there instead.
TEST_ROOM_KB=$((4 * 1024 * 1024))
test_tmpdir() {
  if [ -n "${TEST_TMPDIR:-}" ]; then
    mkdir -p "$TEST_TMPDIR" && echo "$TEST_TMPDIR"
    return
  fi
  local parent="${TMPDIR:-/tmp}" dir
  if [ -d /dev/shm ] && [ "$(df --output=avail -k /dev/shm | tail -1)" -ge "$TEST_ROOM_KB" ]; then
    parent=/dev/shm
  fi
  dir="$(mktemp -d "$parent/jobstream-test.XXXXXX")"
  chmod 755 "$dir"  # PostgreSQL runs as its own user, in directories below this one
  echo "$dir"
}

step() {  # NAME COMMAND...: runs it and says how long it took
  local name="$1" start=$SECONDS
  shift
  "$@"
  echo "== $name took $((SECONDS - start)) s"
}

run_ctest() {  # BUILD_DIR
  local tmp status=0
  tmp="$(test_tmpdir)"
  echo "== ctest in $1 (-j$TEST_JOBS, files in $tmp)"
  # LSAN_OPTIONS: tests/lsan.supp (what a sanitized test process may leave at exit).
  # ASAN_OPTIONS: a freed block waits in a 32 MiB quarantine (use after free is still caught
  # until 32 MiB more has been freed) rather than the default 256 MiB, which kept every busy
  # server's freed memory and made it fault in fresh pages instead (12 us a fault on our
  # 2-core machine): the same 28 server tests, runs alternated, 27.7-36.4 s at the default,
  # 24.8-30.1 s at 32 MiB.
  (cd "$1" && TMPDIR="$tmp" LSAN_OPTIONS="suppressions=$JOBSTREAM_ROOT/tests/lsan.supp" \
    ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=32}" \
    ctest "-j$TEST_JOBS" --output-on-failure --timeout 600 --no-tests=error) || status=$?
  [ -n "${TEST_TMPDIR:-}" ] || rm -rf "$tmp"
  return "$status"
}

# The browser tests drive Debian's chromium; the Python worker runs on Debian's grpcio, and
# the Python package is pip-installed into a venv (offline: Debian's setuptools and wheel)
# where the Flask and FastAPI examples run;
# the fuzz targets are built with clang 14's libFuzzer and sanitizers; promtool (in
# prometheus) checks what /metrics serves.
prometheus_was_missing=
installed prometheus || prometheus_was_missing=yes
step install install_missing chromium python3 python3-grpcio python3-protobuf openssl curl \
  python3-venv python3-setuptools python3-wheel python3-flask python3-fastapi python3-uvicorn \
  clang-14 libclang-rt-14-dev prometheus
# On a machine with systemd, Debian starts the prometheus service it installs; the tests
# run promtool and a prometheus of their own on free ports, so one started by this install
# is stopped.
if [ -n "$prometheus_was_missing" ] && command -v systemctl >/dev/null 2>&1 &&
    systemctl is-active --quiet prometheus 2>/dev/null; then
  as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
step build build
# The Node tests' packages, and the jobstream npm package's own (clients/js: its
# dependencies, and TypeScript for the check of its declarations).
for folder in tests/js clients/js; do
  echo "== npm ci in $folder"
  (cd "$JOBSTREAM_ROOT/$folder" && npm ci --no-audit --no-fund --loglevel=error)
done
step ctest run_ctest "$BUILD_DIR"
step "sanitizer build" build_fuzz all
step "sanitizer ctest (ASan + UBSan, and the fuzz smoke)" run_ctest "$FUZZ_BUILD_DIR"
echo "== scripts/test.sh took $SECONDS s"
