#!/usr/bin/env bash
# One PostgreSQL 15 for a whole ctest run (the fixture "postgres"): every test that needs
# one makes a database of its own on it, instead of each test process running initdb and
# starting a server of its own (1.5-3 s and half the suite's CPU). Tests that restart or
# crash PostgreSQL still start a private one (PostgresProcess).
#
#   shared_postgres.sh start FILE   initdb + start; writes "PORT DIR CTEST_PID" to FILE
#   shared_postgres.sh stop FILE    stops it and removes its directory and FILE
#
# Where PostgreSQL 15 is not installed, start writes no FILE and the tests skip, saying so.
# A watchdog stops the server if ctest goes without running the stop (killed, Ctrl-C).
# One ctest run at a time per build directory: a second is refused rather than sharing a
# server the first would stop under it.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
cmd="${1:?start|stop}"
file="${2:?FILE}"

stop() {  # PORT DIR
  "${AS[@]}" "$BIN/pg_ctl" -D "$2/data" -m immediate -s stop >/dev/null 2>&1 || true
  rm -rf "$2"
}

AS=()
[ "$(id -u)" -eq 0 ] && AS=(runuser -u postgres --)  # initdb refuses to run as root

ctest_pid=$PPID  # ctest runs this script: the server lives as long as that run

case "$cmd" in
start)
  if [ -f "$file" ]; then
    read -r old_port old_dir old_owner <"$file" || true
    if [ -n "${old_owner:-}" ] && [ "$old_owner" != "$ctest_pid" ] && kill -0 "$old_owner" 2>/dev/null; then
      echo "another ctest run (pid $old_owner) is using this build directory's PostgreSQL" >&2
      exit 1
    fi
    [ -n "${old_dir:-}" ] && stop "$old_port" "$old_dir"  # left by a run that was killed
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
      # When ctest goes, so does the server (and the file, if it is still this server's).
      setsid bash -c "while kill -0 $ctest_pid 2>/dev/null && [ -d '$dir' ]; do sleep 2; done
        $(declare -f stop); AS=(${AS[*]}); BIN=$BIN
        if [ -d '$dir' ]; then stop $port '$dir'; grep -qs ' $dir ' '$file' && rm -f '$file'; fi" \
        </dev/null >/dev/null 2>&1 &
      exit 0
    fi
  done
  cat "$dir/postgres.log"
  rm -rf "$dir"
  exit 1
  ;;
stop)
  [ -f "$file" ] || exit 0
  read -r port dir owner <"$file"
  [ "$owner" = "$ctest_pid" ] || exit 0  # another run's
  stop "$port" "$dir"
  rm -f "$file"
  ;;
*)
  echo "usage: shared_postgres.sh start|stop FILE" >&2
  exit 2
  ;;
esac
