#!/usr/bin/env bash
# tests/pg_test.sh COMMAND... — runs a registry test against a PostgreSQL server (ctest's
# *_postgres entries): KILN_TEST_PG when it is set, else the local throwaway server that
# scripts/pg_local.sh starts (idempotent). Exit 77 (ctest: skipped) with a line saying why only
# when no server can be reached; otherwise the command's own exit status.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${KILN_TEST_PG:-}" ]; then
    if ! KILN_TEST_PG=$(bash "$here/scripts/pg_local.sh" 2>/tmp/kiln-pg-test-$$.err); then
        echo "SKIPPED: no PostgreSQL server: scripts/pg_local.sh could not start one:" \
             "$(tr '\n' ' ' </tmp/kiln-pg-test-$$.err)"
        rm -f /tmp/kiln-pg-test-$$.err
        exit 77
    fi
    rm -f /tmp/kiln-pg-test-$$.err
fi
ready=$(ls /usr/lib/postgresql/*/bin/pg_isready /usr/bin/pg_isready 2>/dev/null | head -1)
if [ -n "$ready" ] && ! "$ready" -q -d "$KILN_TEST_PG" -t 10; then
    echo "SKIPPED: no PostgreSQL server answers at $KILN_TEST_PG"
    exit 77
fi
export KILN_TEST_PG
echo "PostgreSQL: $KILN_TEST_PG"
exec "$@"
