#!/usr/bin/env bash
# Installs what is missing, builds, starts jobstream-server with defaults (or reuses the
# one this script started before), submits a demo job and shows its progress live.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

install_missing
build

RUN_DIR="$BUILD_DIR/run"
mkdir -p "$RUN_DIR"
SERVER_PID_FILE="$RUN_DIR/server.pid"
ADDRESS="127.0.0.1:50051"
cd "$JOBSTREAM_ROOT"

if [ -f "$SERVER_PID_FILE" ] && kill -0 "$(cat "$SERVER_PID_FILE")" 2>/dev/null; then
  echo "== jobstream-server already running (pid $(cat "$SERVER_PID_FILE"))"
else
  echo "== starting jobstream-server on $ADDRESS, data in ./jobstream-data"
  "$BUILD_DIR/server/jobstream-server" --listen="$ADDRESS" --data_dir=./jobstream-data \
    >"$RUN_DIR/server.out" 2>"$RUN_DIR/server.log" &
  echo $! >"$SERVER_PID_FILE"
  for _ in $(seq 1 100); do
    grep -q "^listening on" "$RUN_DIR/server.out" 2>/dev/null && break
    if ! kill -0 "$(cat "$SERVER_PID_FILE")" 2>/dev/null; then
      echo "jobstream-server failed to start:"; cat "$RUN_DIR/server.log"; exit 1
    fi
    sleep 0.1
  done
  head -n1 "$RUN_DIR/server.out"
fi

JOBSTREAM="$BUILD_DIR/client/jobstream"
echo "== submitting a demo job and watching it"
"$JOBSTREAM" --server="$ADDRESS" submit demo.steps \
  --params='{"steps": ["fetch", "render", "upload"], "step_ms": 800, "ticks": 8}' --watch ||
  true
cat <<MSG

jobstream-server is running (pid $(cat "$SERVER_PID_FILE"), log $RUN_DIR/server.log).
Try:
  $JOBSTREAM list
  $JOBSTREAM submit demo.steps --params='{"fail_at": "render"}' --watch
  $JOBSTREAM watch ID --after=3
Stop it with: kill $(cat "$SERVER_PID_FILE")
MSG
