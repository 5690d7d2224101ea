#!/usr/bin/env bash
# Installs what is missing, builds, starts jobstream-server (with examples/config.json:
# an exec type and an external one), jobstream-gateway and an external worker (or reuses
# the ones this script started before), submits a demo job and shows its progress live.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

install_missing
build

RUN_DIR="$BUILD_DIR/run"
mkdir -p "$RUN_DIR"
ADDRESS="127.0.0.1:50051"
GATEWAY="127.0.0.1:8080"
cd "$JOBSTREAM_ROOT"

# start NAME ARGS...: runs build/NAME in the background unless this script's earlier one
# still runs, and waits for its "listening on" line.
start() {
  local name="$1"; shift
  local base; base="$(basename "$name")"
  local pid_file="$RUN_DIR/$base.pid"
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "== $base already running (pid $(cat "$pid_file"))"
    return
  fi
  echo "== starting $base"
  "$BUILD_DIR/$name" "$@" >"$RUN_DIR/$base.out" 2>"$RUN_DIR/$base.log" &
  echo $! >"$pid_file"
  for _ in $(seq 1 100); do
    grep -q "^listening on" "$RUN_DIR/$base.out" 2>/dev/null && break
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      echo "$base failed to start:"; cat "$RUN_DIR/$base.log"; exit 1
    fi
    sleep 0.1
  done
  head -n1 "$RUN_DIR/$base.out"
}

start server/jobstream-server --listen="$ADDRESS" --data_dir=./jobstream-data \
  --config=examples/config.json
start gateway/jobstream-gateway --listen="$GATEWAY" --server="$ADDRESS"
SERVER_PID=$(cat "$RUN_DIR/jobstream-server.pid")
GATEWAY_PID=$(cat "$RUN_DIR/jobstream-gateway.pid")

JOBSTREAM="$BUILD_DIR/client/jobstream"
# An external worker for thumbnails.remote: the same script, leased over WorkerService.
WORKER_PID_FILE="$RUN_DIR/jobstream-work.pid"
if ! { [ -f "$WORKER_PID_FILE" ] && kill -0 "$(cat "$WORKER_PID_FILE")" 2>/dev/null; }; then
  echo "== starting jobstream work --type=thumbnails.remote"
  "$JOBSTREAM" --server="$ADDRESS" work --type=thumbnails.remote --concurrency=2 \
    -- examples/jobs/thumbnails.sh >"$RUN_DIR/jobstream-work.log" 2>&1 &
  echo $! >"$WORKER_PID_FILE"
fi
WORKER_PID=$(cat "$WORKER_PID_FILE")
echo "== submitting a demo job and watching it"
"$JOBSTREAM" --server="$ADDRESS" submit demo.steps \
  --params='{"steps": ["fetch", "render", "upload"], "step_ms": 800, "ticks": 8}' --watch ||
  true
cat <<MSG

jobstream-server (pid $SERVER_PID), jobstream-gateway (pid $GATEWAY_PID) and a worker
(pid $WORKER_PID) are running; logs in $RUN_DIR.

  open http://$GATEWAY/      # the live page: submit jobs, watch their progress bars

Try:
  $JOBSTREAM list
  $JOBSTREAM submit demo.steps --params='{"fail_at": "render"}' --watch
  $JOBSTREAM submit thumbnails --params='{"images": 3}' --watch          # a script the server runs
  $JOBSTREAM submit thumbnails.remote --params='{"images": 3}' --watch   # the same, on the worker
  $JOBSTREAM fetch ID contact-sheet.svg            # the file a thumbnails job wrote
  $JOBSTREAM types
  curl -s http://$GATEWAY/v1/jobs
  curl -sN http://$GATEWAY/v1/jobs/ID/events      # the job's events as Server-Sent Events
  curl -s "http://$GATEWAY/v1/jobs/ID:wait?timeout=30s"   # returns when the job ends
  curl -si http://$GATEWAY/v1/jobs/ID/result      # 202 + Retry-After until then
Stop them with: kill $WORKER_PID $GATEWAY_PID $SERVER_PID
MSG
