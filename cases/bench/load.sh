#!/usr/bin/env bash
# p50/p99 of listing and reading disputes at ~200 requests/s on SQLite, with wrk on
# loopback. Starts cases/examples/loadserver (which stops by itself), runs two paced
# 30-second wrk runs, and stops the server. Needs `wrk` (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${PORT:-18080}
DUR=${DUR:-30}
DATA=$(mktemp -d /tmp/fq-load.XXXXXX)
cargo build -q -p fengqiao-cases --example loadserver ${PROFILE:+--profile $PROFILE}
BIN=${CARGO_TARGET_DIR:-target}/${PROFILE:-debug}/examples/loadserver
[ "${PROFILE:-}" = "dev" ] && BIN=${CARGO_TARGET_DIR:-target}/debug/examples/loadserver
"$BIN" "$DATA" "$PORT" $((DUR * 2 + 120)) 2000 >"$DATA/server.out" 2>"$DATA/server.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 600); do
    grep -q '^DISPUTE=' "$DATA/server.out" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.2
done
TOKEN=$(sed -n 's/^TOKEN=//p' "$DATA/server.out")
ID=$(sed -n 's/^DISPUTE=//p' "$DATA/server.out")
echo "== list: GET /api/disputes?per_page=20 (~200 req/s, ${DUR}s)"
FQ_DELAY_MS=${FQ_DELAY_MS:-95} wrk -t2 -c20 -d"${DUR}s" -s cases/bench/paced.lua -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PORT/api/disputes?per_page=20" | sed -n '/^requests/,$p'
echo "== read: GET /api/disputes/$ID (~200 req/s, ${DUR}s)"
FQ_DELAY_MS=${FQ_DELAY_MS:-95} wrk -t2 -c20 -d"${DUR}s" -s cases/bench/paced.lua -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PORT/api/disputes/$ID" | sed -n '/^requests/,$p'
