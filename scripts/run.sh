#!/usr/bin/env bash
# Installs what is missing, builds, starts jobstream-server (with examples/config.json:
# an exec type and an external one), jobstream-gateway and an external worker (or reuses
# the ones this script started before), submits a demo job and shows its progress live.
#
# scripts/run.sh --postgres: the scaled-out shape instead — a local PostgreSQL (initdb'd
# once, loopback only), two servers sharing it, the gateway in front of both.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

POSTGRES=false
case "${1:-}" in
  "") ;;
  --postgres) POSTGRES=true ;;
  *) echo "usage: scripts/run.sh [--postgres]" >&2; exit 2 ;;
esac

install_missing
build jobstream-server jobstream-gateway jobstream  # what it starts; tests and benches: test.sh

RUN_DIR="$BUILD_DIR/run"
mkdir -p "$RUN_DIR"
ADDRESS="127.0.0.1:50051"
GATEWAY="127.0.0.1:8080"
cd "$JOBSTREAM_ROOT"

# start LABEL NAME ARGS...: runs build/NAME in the background unless this script's earlier
# one of that label still runs, and waits for its "listening on" line.
start() {
  local base="$1"; shift
  local name="$1"; shift
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

# A PostgreSQL of its own, in /var/tmp (its server runs as the postgres user, who must
# reach the directory), on port 55432 of loopback only.
start_postgres() {
  local bin=/usr/lib/postgresql/15/bin dir=/var/tmp/jobstream-postgres
  PG_PORT=55432
  PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
  if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    echo "== PostgreSQL already running on 127.0.0.1:$PG_PORT"
    return
  fi
  local as=()
  [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)  # initdb refuses to run as root
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    echo "== initdb in $dir/data"
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres -A trust >"$dir/initdb.log"
  fi
  echo "== starting PostgreSQL on 127.0.0.1:$PG_PORT"
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w start \
    -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1" >/dev/null
}

if $POSTGRES; then
  start_postgres
  ADDRESS="127.0.0.1:50051,127.0.0.1:50052"
  start jobstream-server-a server/jobstream-server --listen=127.0.0.1:50051 --store="$PG_URL" \
    --server_id=a --config=examples/config.json
  start jobstream-server-b server/jobstream-server --listen=127.0.0.1:50052 --store="$PG_URL" \
    --server_id=b --config=examples/config.json
  SERVER_PID="$(cat "$RUN_DIR/jobstream-server-a.pid") $(cat "$RUN_DIR/jobstream-server-b.pid")"
else
  start jobstream-server server/jobstream-server --listen="$ADDRESS" \
    --data_dir=./jobstream-data --config=examples/config.json
  SERVER_PID=$(cat "$RUN_DIR/jobstream-server.pid")
fi
start jobstream-gateway gateway/jobstream-gateway --listen="$GATEWAY" --server="$ADDRESS"
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
if $POSTGRES; then
  cat <<MSG

Two jobstream-servers on one PostgreSQL ($PG_URL; pids $SERVER_PID),
jobstream-gateway in front of both (pid $GATEWAY_PID) and a worker polling both
(pid $WORKER_PID) are running; logs in $RUN_DIR. Any server answers for any job: kill
one mid-job and its jobs carry on on the other once their leases expire (30 s).
MSG
else
  cat <<MSG

jobstream-server (pid $SERVER_PID), jobstream-gateway (pid $GATEWAY_PID) and a worker
(pid $WORKER_PID) are running; logs in $RUN_DIR.
MSG
fi
cat <<MSG

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
if $POSTGRES; then
  echo "and PostgreSQL with: runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl \\"
  echo "  -D /var/tmp/jobstream-postgres/data stop"
fi
