#!/usr/bin/env bash
# scripts/pg_local.sh — a throwaway local PostgreSQL server for kiln's registry tests.
#
#   bash scripts/pg_local.sh          start it (or find it running); print its URI on stdout
#   bash scripts/pg_local.sh stop     stop it (immediately)
#   bash scripts/pg_local.sh start    start a stopped cluster again (after stop)
#   bash scripts/pg_local.sh uri      print the URI without starting anything
#
# Idempotent: a cluster that runs is left alone. Data in $KILN_PG_DIR (default
# /tmp/kiln-pg-<uid>), listening on 127.0.0.1:$KILN_PG_PORT (default 54329) and a unix socket in
# the data folder, trust authentication, user postgres, database kiln. As root, the server runs
# as the postgres user (initdb refuses root). Needs Debian's postgresql (15 or later; bin folder
# found under /usr/lib/postgresql/*/bin, or $KILN_PG_BIN).
# Exit status: 0 running, 1 cannot start (the reason on stderr).
set -euo pipefail

DIR=${KILN_PG_DIR:-/tmp/kiln-pg-$(id -u)}
PORT=${KILN_PG_PORT:-54329}
URI="postgresql://postgres@127.0.0.1:$PORT/kiln"
BIN=${KILN_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)}

if [[ "${1:-}" == uri ]]; then echo "$URI"; exit 0; fi
# one caller at a time (ctest runs several tests that start it at once)
exec 9>"${DIR}.lock"
flock 9
if [[ -z "$BIN" || ! -x "$BIN/initdb" ]]; then
  echo "pg_local.sh: no PostgreSQL server binaries (install Debian's postgresql)" >&2
  exit 1
fi

as_owner() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() { as_owner "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

if [[ "${1:-}" == stop ]]; then
  if running; then as_owner "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null; fi
  exit 0
fi

if ! running; then
  mkdir -p "$DIR"
  if [[ $(id -u) == 0 ]]; then chown postgres: "$DIR"; fi
  if [[ ! -f "$DIR/data/PG_VERSION" ]]; then
    as_owner "$BIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
      >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; exit 1; }
  fi
  # 9>&-: the server must not inherit this script's lock
  as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" \
    start >/dev/null 9>&- || { tail -20 "$DIR/server.log" >&2; exit 1; }
fi
# the database (createdb answers an existing one with an error: ask first)
if ! as_owner "$BIN/psql" -h "$DIR" -p "$PORT" -U postgres -d postgres -Atqc \
     "SELECT 1 FROM pg_database WHERE datname = 'kiln'" | grep -q 1; then
  as_owner "$BIN/createdb" -h "$DIR" -p "$PORT" -U postgres kiln 2>/dev/null || true
fi
echo "$URI"
