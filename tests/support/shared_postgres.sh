#!/usr/bin/env bash
# One PostgreSQL 15 for a whole ctest run (the fixture "postgres"): every test that needs
# one makes a database of its own on it, instead of each test process running initdb and
# starting a server of its own (1.5-3 s and half the suite's CPU). Tests that restart or
# crash PostgreSQL still start a private one (PostgresProcess).
#
#   shared_postgres.sh start FILE   initdb + start; writes "PORT DIR CTEST_PID" to FILE
#   shared_postgres.sh stop FILE    stops it and removes its directory and FILE
# (and, internally, "watch": the watchdog start leaves behind)
#
# Where PostgreSQL 15 is not installed, start writes no FILE and the tests skip, saying so.
# A watchdog stops the server if ctest goes without running the stop (killed, Ctrl-C).
# One ctest run at a time per build directory: a second is refused rather than sharing a
# server the first would stop under it.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
cmd="${1:?start|stop}"
file="${2:?FILE}"

stop() {  # DIR
  "${AS[@]}" "$BIN/pg_ctl" -D "$1/data" -m immediate -s stop >/dev/null 2>&1 || true
  rm -rf "$1"
}

AS=()
[ "$(id -u)" -eq 0 ] && AS=(runuser -u postgres --)  # initdb refuses to run as root

ctest_pid=$PPID  # ctest runs this script: the server lives as long as that run

case "$cmd" in
start)
  if [ -f "$file" ]; then
    read -r _ old_dir old_owner <"$file" || true
    if [ -n "${old_owner:-}" ] && [ "$old_owner" != "$ctest_pid" ] && kill -0 "$old_owner" 2>/dev/null; then
      echo "another ctest run (pid $old_owner) is using this build directory's PostgreSQL" >&2
      exit 1
    fi
    [ -n "${old_dir:-}" ] && stop "$old_dir"  # left by a run that was killed
    rm -f "$file"
  fi
  if [ ! -x "$BIN/postgres" ] || { [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; }; then
    echo "PostgreSQL 15 is not installed: its tests will skip"
    exit 0
  fi
  dir="$(mktemp -d "${TMPDIR:-/tmp}/jobstream-ctest-postgres.XXXXXX")"
  chmod 711 "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  "${AS[@]}" "$BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; rm -rf "$dir"; exit 1; }
  # fsync off: no test crashes the machine, only processes, and a process's crash loses
  # nothing the kernel was given. Commits stay synchronous (a crashed postgres keeps what it
  # acknowledged), so the durability the tests check is still real.
  for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 30000))
    if "${AS[@]}" "$BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 -s start \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=1000 \
            -c fsync=off -c full_page_writes=off -c shared_buffers=256MB" >/dev/null 2>&1; then
      echo "$port $dir $ctest_pid" >"$file"
      echo "PostgreSQL for this run on 127.0.0.1:$port, in $dir"
      setsid bash "$0" watch "$file" "$ctest_pid" "$dir" </dev/null >/dev/null 2>&1 &
      exit 0
    fi
  done
  cat "$dir/postgres.log"
  rm -rf "$dir"
  exit 1
  ;;
stop)
  [ -f "$file" ] || exit 0
  read -r _ dir owner <"$file"
  [ "$owner" = "$ctest_pid" ] || exit 0  # another run's
  stop "$dir"
  rm -f "$file"
  ;;
watch)  # FILE CTEST_PID DIR: when ctest goes, so does the server (and FILE, if still its)
  while kill -0 "$3" 2>/dev/null && [ -d "$4" ]; do sleep 2; done
  if [ -d "$4" ]; then
    stop "$4"
    grep -qs " $4 " "$file" && rm -f "$file"
  fi
  ;;
*)
  echo "usage: shared_postgres.sh start|stop FILE" >&2
  exit 2
  ;;
esac
