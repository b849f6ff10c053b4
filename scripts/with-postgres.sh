#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL cluster (default: the case
# service's test suite, which then covers SQLite and PostgreSQL).
#   scripts/with-postgres.sh                 → cargo test -p fengqiao-cases
#   scripts/with-postgres.sh cargo test ...  → any command
#
# - installs Debian's `postgresql` (15 on bookworm) with apt only when it is missing;
# - starts a throwaway cluster (initdb + pg_ctl as the `postgres` user, in a temporary
#   folder, on a free port of 127.0.0.1, trust authentication on loopback only);
# - exports FENGQIAO_TEST_POSTGRES_URL and runs the command (honours CARGO_TARGET_DIR);
# - stops the cluster and removes its folder on exit, whether the tests passed or not.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! dpkg -s postgresql >/dev/null 2>&1; then
    echo "test-cases: installing postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends postgresql
fi

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
    echo "test-cases: no PostgreSQL server binaries under /usr/lib/postgresql" >&2
    exit 1
fi

# Run the cluster as `postgres` when we are root (initdb refuses root).
if [ "$(id -u)" = 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
    PGUSER_NAME=postgres
else
    as_pg() { "$@"; }
    PGUSER_NAME=$(id -un)
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=""
for p in $(seq 54321 54420); do
    if port_free "$p"; then PORT=$p; break; fi
done
[ -n "$PORT" ] || { echo "test-cases: no free port" >&2; exit 1; }

PGTMP=$(mktemp -d /tmp/fq-pg.XXXXXX)
chmod 755 "$PGTMP"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PGTMP"

cleanup() {
    local rc=$?
    as_pg "$PGBIN/pg_ctl" -D "$PGTMP/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PGTMP"
    exit $rc
}
trap cleanup EXIT INT TERM

as_pg "$PGBIN/initdb" -D "$PGTMP/data" -U "$PGUSER_NAME" --auth=trust -E UTF8 --locale=C.UTF-8 >"$PGTMP/initdb.log" 2>&1 \
    || { cat "$PGTMP/initdb.log" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PGTMP -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$PGTMP/server.log" >&2; exit 1; }

export FENGQIAO_TEST_POSTGRES_URL="postgres://$PGUSER_NAME@127.0.0.1:$PORT/postgres"
echo "test-cases: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') at 127.0.0.1:$PORT" >&2

if [ $# -eq 0 ]; then set -- cargo test -p fengqiao-cases; fi
"$@"
