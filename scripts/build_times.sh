#!/usr/bin/env bash
# Where a build's time went, from ninja's own log: seconds per target (summed over its
# sources, so CPU time, not wall time) and the slowest steps. Run after a build from
# scratch (an incremental one logs only what it rebuilt).
#   scripts/build_times.sh [BUILD_DIR] [N]     (default build, 15)
set -euo pipefail
dir="${1:-$(dirname "$0")/../build}"
n="${2:-15}"
log="$dir/.ninja_log"
[ -f "$log" ] || { echo "no $log: build first" >&2; exit 2; }
# .ninja_log v5: start_ms end_ms mtime output hash; a step rebuilt later logs again, and the
# newest line of each output counts.
awk -v n="$n" '
  NR > 1 { t[$4] = ($2 - $1) / 1000 }
  END {
    for (o in t) {
      target = o
      if (match(o, /CMakeFiles\/[^\/]+\.dir\//)) target = substr(o, RSTART + 11, RLENGTH - 16)
      sum[target] += t[o]; count[target]++; total += t[o]
    }
    printf "%.0f s in %d steps\n\nseconds  steps  target\n", total, length(t)
    for (k in sum) printf "%7.1f  %5d  %s\n", sum[k], count[k], k | "sort -rn | head -" n
    close("sort -rn | head -" n)
    printf "\nslowest steps\n"
    for (o in t) printf "%7.1f  %s\n", t[o], o | "sort -rn | head -" n
  }' "$log"
