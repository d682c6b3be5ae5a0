#!/usr/bin/env bash
# Load test of the Action's hot path, POST /api/v1/credentials/exchange
# (ACTION_API.md § 1; seed target: 200 requests/s at P95 < 200 ms). Prints
# wrk's latency distribution; it asserts nothing, so it is not part of
# scripts/test.sh.
#
#   ./scripts/load-test.sh [DURATION_SECONDS] [CONNECTIONS]
#
# Builds the release server, starts it on 127.0.0.1:3950 against a fresh
# database, onboards one customer and runs wrk (Debian's package) for
# DURATION_SECONDS (default 15) with CONNECTIONS (default 20). Traffic goes to
# loopback only, and the run stops by itself.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
cd "$RSOLV_ROOT"

duration="${1:-15}"
connections="${2:-20}"
addr="127.0.0.1:3950"

command -v wrk >/dev/null 2>&1 || apt_install wrk
ensure_build_tools
if [ -z "${TEST_DATABASE_URL:-}" ]; then
  ensure_local_postgres
  TEST_DATABASE_URL="$PG_ADMIN_URL"
fi
db="rsolv_load_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
ensure_database "$TEST_DATABASE_URL" "$db"

log "cargo leptos build --release"
cargo leptos build --release
server_pid=""
workdir="$(mktemp -d)"
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  drop_database "$TEST_DATABASE_URL" "$db" || true
  rm -rf "$workdir"
}
trap cleanup EXIT

DATABASE_URL="$(url_with_database "$TEST_DATABASE_URL" "$db")" \
  PROVIDER_ANTHROPIC_API_KEY=load-test-credential LEPTOS_SITE_ADDR="$addr" RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/rsolv-platform" serve --migrate &
server_pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://$addr/health" >/dev/null && break
  sleep 0.1
done

key="$(curl -sf -X POST "http://$addr/api/v1/customers/onboard" -H 'content-type: application/json' \
  -d '{"email":"load-test@example.com","name":"Load Test"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')"
# The key goes into a script file only (never onto a command line or a log).
cat >"$workdir/exchange.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"providers":["anthropic","openai"],"ttl_minutes":60}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "$key"
LUA
log "wrk: ${duration}s, ${connections} connections, POST /api/v1/credentials/exchange"
wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$workdir/exchange.lua" \
  "http://$addr/api/v1/credentials/exchange"
