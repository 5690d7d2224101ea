#!/usr/bin/env bash
# bench/compare.sh OLD NEW [ROUNDS]: is NEW slower (or faster) than OLD?
#
# Builds the servers (and gateways) of two revisions out of tree, then runs the same bench
# binaries — NEW's — against each in turn, ROUNDS times (default 3), alternating which goes
# first, so both see the same machine at nearly the same moments. Prints every figure the
# benches report with each side's median and range and the NEW/OLD ratio of the medians,
# beside the range of the ratios pair by pair (a ratio whose pairs straddle 1 is noise).
#
#   bench/compare.sh 3e7568f HEAD            # or any two revisions git knows
#   PHASES=server,workers bench/compare.sh HEAD~5 HEAD 5
#
# PHASES (default server,workers,gateway): server = jobstream-bench (durable Submit,
# GetStatus, fan-out to 1,000 watchers, idle streams); workers = jobstream-worker-bench's
# workers and latency phases (external workers ending by CompleteJob, which every revision
# serves); gateway = bench/gateway_bench.mjs (SSE through each revision's gateway).
# NEW's benches are used for both sides, with the flags they have since issue 23 (e.g.
# jobstream-worker-bench --endings): NEW must be that recent, OLD may be any revision.
# DURATION (default 2s): each throughput phase. The builds live in $COMPARE_DIR
# (default /tmp/jobstream-compare), kept between runs so a second comparison builds little.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/lib.sh"

[ $# -ge 2 ] || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
OLD="$1" NEW="$2" ROUNDS="${3:-3}"
PHASES="${PHASES:-server,workers,gateway}"
DURATION="${DURATION:-2s}"
COMPARE_DIR="${COMPARE_DIR:-/tmp/jobstream-compare}"
[[ "$ROUNDS" =~ ^[1-9][0-9]?$ ]] || { echo "ROUNDS: 1..99, not \"$ROUNDS\"" >&2; exit 2; }
for phase in ${PHASES//,/ }; do
  case "$phase" in server|workers|gateway) ;; *) echo "PHASES: \"$phase\" is not server, workers or gateway" >&2; exit 2 ;; esac
done

# build_rev REV: prints the build directory of REV's server and gateway (and, for NEW,
# the benches), building what is missing from a detached worktree of it.
build_rev() {
  local rev sha src out
  rev="$1"
  sha="$(git -C "$ROOT" rev-parse --verify --quiet "$rev^{commit}")" ||
    { echo "compare: \"$rev\" is not a revision of $ROOT" >&2; return 1; }
  src="$COMPARE_DIR/src-${sha:0:12}" out="$COMPARE_DIR/build-${sha:0:12}"
  mkdir -p "$COMPARE_DIR"
  [ -d "$src" ] || git -C "$ROOT" worktree add --detach --quiet "$src" "$sha"
  cmake -S "$src" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$RELWITHDEBINFO_FLAGS" >/dev/null
  ninja -C "$out" -j2 "${@:2}" >&2
  echo "$out"
}

echo "== building $OLD and $NEW in $COMPARE_DIR" >&2
old_build="$(build_rev "$OLD" jobstream-server jobstream-gateway)"
new_build="$(build_rev "$NEW" jobstream-server jobstream-gateway jobstream-bench jobstream-worker-bench)"
benches="$new_build/bench"
results="$(mktemp -d "${TMPDIR:-/tmp}/jobstream-compare.XXXXXX")"
trap 'rm -rf "$results"' EXIT

# run_side LABEL BUILD ROUND: every phase against BUILD's server, output kept by label.
run_side() {
  local label="$1" build="$2" round="$3" log
  log="$results/$label.$round.md"
  for phase in ${PHASES//,/ }; do
    case "$phase" in
      server)
        "$benches/jobstream-bench" --server_bin="$build/server/jobstream-server" \
          --duration="$DURATION" --idle_streams=2000 ;;
      workers)
        "$benches/jobstream-worker-bench" --server_bin="$build/server/jobstream-server" \
          --phases=workers,latency --duration="$DURATION" --workers=8,32 --lease_sizes=1,16 \
          --endings=complete --celery_jobs=0 ;;
      gateway)
        (cd "$ROOT/tests/js" && JOBSTREAM_BIN_DIR="$build" node "$ROOT/bench/gateway_bench.mjs" \
          --connections=2000 --clients=200 --rate=2000) ;;
    esac
  done > "$log" 2> "$log.err" || { echo "compare: $label, round $round failed:" >&2; tail -20 "$log.err" >&2; exit 1; }
  echo "$log"
}

for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order=(old new); else order=(new old); fi
  for side in "${order[@]}"; do
    echo "== round $round of $ROUNDS: $side" >&2
    if [ "$side" = old ]; then run_side old "$old_build" "$round"; else run_side new "$new_build" "$round"; fi
  done
done >/dev/null

echo "# $OLD (old) against $NEW (new): $ROUNDS rounds alternated, phases $PHASES, $(date -u +%Y-%m-%dT%H:%MZ)"
/usr/bin/python3 "$ROOT/bench/compare_figures.py" "$results"
