#!/usr/bin/env bash
# Benchmark of the hot paths (issue 13), each beside a reference measured in
# the same run on the same machine. Not part of scripts/test.sh: it asserts
# nothing, it prints figures (README § Performance).
#
#   ./scripts/bench.sh                 # 10 s per path, 32 connections
#   BENCH_SECONDS=5 BENCH_CONNECTIONS=16 BENCH_EVENTS=5000 ./scripts/bench.sh
#   BENCH_ONLY=webhooks BENCH_SKIP_BUILD=1 ./scripts/bench.sh   # one section, last build
#
# What it does, loopback only, bounded in time (about 3 minutes plus the
# release build):
#   1. builds the release server and bundle, content-hashed and precompressed
#      (cargo leptos build --release --precompress);
#   2. starts localstripe, a fresh database, the platform (`serve`) and the
#      reference server (`bench-reference`: axum + one indexed PostgreSQL
#      read per request, nothing else) on free ports;
#   3. onboards BENCH_CUSTOMERS customers through the Action API;
#   4. drives, with wrk (Debian's package):
#        - POST /api/v1/credentials/exchange   vs  POST /reference
#        - POST /api/v1/fix-attempts (distinct fixes; one customer, then all)
#          vs  pgbench's built-in tpcb-like on a database of its own
#        - POST /webhooks/stripe (BENCH_EVENTS signed events) accepted per
#          second, then how fast the job queue applies them, and the lag
#          from receipt to applied at a paced ~500 events/s
#        - GET / and GET /login                vs  POST /reference
#   5. reports the hydrate bundle's size (raw, gzip -9, brotli), the headers
#      it is served with, the server's peak RSS, and checks the ledger
#      (Σ entries = balance for every customer) after the run;
#   6. the mixed run: the first server stops; two `serve --no-job-worker`
#      instances and one `worker` process share the database; for
#      BENCH_SECONDS wrk drives at once the exchange (instance A), fix
#      recording (instance B) and webhooks on both (~250 events/s each);
#      then it checks that nothing was lost (every stored webhook applied
#      exactly once, every 2xx fix recorded once with its ledger entry,
#      Σ ledger = balance) and reports each process's peak RSS.
# Each line prints the figure, its reference and the ratio.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
cd "$RSOLV_ROOT"

duration="${BENCH_SECONDS:-10}"
connections="${BENCH_CONNECTIONS:-32}"
customers="${BENCH_CUSTOMERS:-32}"
events="${BENCH_EVENTS:-20000}"
webhook_secret="whsec_rsolv_bench"
# BENCH_ONLY: the sections to run, of exchange fixes webhooks pages bundle
# mixed (space- or comma-separated); all when unset.
only=" ${BENCH_ONLY:-} "; only="${only//,/ }"
wants() { [ "$only" = "  " ] || [[ "$only" == *" $1 "* ]]; }

command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v brotli >/dev/null 2>&1 || apt_install brotli
command -v pgbench >/dev/null 2>&1 || apt_install postgresql-client
ensure_build_tools
ensure_localstripe
if [ -z "${TEST_DATABASE_URL:-}" ]; then
  ensure_local_postgres
  TEST_DATABASE_URL="$PG_ADMIN_URL"
fi
suffix="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
db="rsolv_bench_$suffix"
pgbench_db="rsolv_pgbench_$suffix"
ensure_database "$TEST_DATABASE_URL" "$db"
ensure_database "$TEST_DATABASE_URL" "$pgbench_db"
db_url="$(url_with_database "$TEST_DATABASE_URL" "$db")"

if [ "${BENCH_SKIP_BUILD:-}" = 1 ] && [ -x "$CARGO_TARGET_DIR/release/rsolv-platform" ]; then
  log "BENCH_SKIP_BUILD=1: the release build already in $CARGO_TARGET_DIR"
else
  log "cargo leptos build --release --precompress"
  cargo leptos build --release --precompress
fi
server_bin="$CARGO_TARGET_DIR/release/rsolv-platform"

server_pid=""
reference_pid=""
mixed_pids=""
workdir="$(mktemp -d)"
cleanup() {
  # `wait` answers a stopped process's status (143): under `set -e` it
  # would end the trap before the next process is stopped.
  for pid in $server_pid $reference_pid $mixed_pids; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  stop_localstripe
  drop_database "$TEST_DATABASE_URL" "$db" || true
  drop_database "$TEST_DATABASE_URL" "$pgbench_db" || true
  rm -rf "$workdir"
  return 0
}
trap cleanup EXIT

start_localstripe
ports="$(free_ports)"
addr="127.0.0.1:${ports% *}"
reference_addr="127.0.0.1:${ports#* }"
base="http://$addr"

# The platform's settings for the run: limits high enough not to be what is
# measured (they are still checked on every request), trial credits enough
# for every fix, emails logged only.
export DATABASE_URL="$db_url" LEPTOS_SITE_ADDR="$addr" RUST_LOG=warn \
  PROVIDER_ANTHROPIC_API_KEY=bench-credential \
  STRIPE_API_BASE="$LOCALSTRIPE_URL" STRIPE_SECRET_KEY=sk_test_rsolv_bench \
  STRIPE_WEBHOOK_SECRETS="$webhook_secret" \
  RATE_LIMIT_ACTION_PER_HOUR=100000000 RATE_LIMIT_SIGNUPS_PER_MINUTE=1000000 \
  PRICING_TRIAL_CREDITS=100000000 EMAIL_TRANSPORT=log

"$server_bin" serve --migrate >"$workdir/server.log" 2>&1 &
server_pid=$!
"$server_bin" bench-reference --addr "$reference_addr" >"$workdir/reference.log" 2>&1 &
reference_pid=$!
for _ in $(seq 1 300); do
  curl -sf "$base/health" >/dev/null && curl -s -o /dev/null "http://$reference_addr/" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$workdir/server.log" >&2; die "the server exited"; }
  sleep 0.1
done

log "Onboarding $customers customers"
: >"$workdir/keys"
for i in $(seq 1 "$customers"); do
  # The onboarding answer holds no key (the owner's first key is shown when
  # they follow the emailed invite): the bench issues each customer a key
  # straight in the database, stored as the platform stores one (SHA-256,
  # 12-character display prefix).
  curl -sf -o /dev/null -X POST "$base/api/v1/customers/onboard" -H 'content-type: application/json' \
    -d "{\"email\":\"bench-$i@example.com\",\"name\":\"Bench $i\"}"
  key="rsolv_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' | head -c 43)"
  hash="$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)"
  psql -w "$db_url" -qAtc "INSERT INTO api_keys (customer_id, name, prefix, token_hash) \
    SELECT id, 'bench', '${key:0:12}', decode('$hash', 'hex') FROM customers WHERE email = 'bench-$i@example.com'" >/dev/null
  printf '%s\n' "$key" >>"$workdir/keys"
done
stripe_customers="$(psql -w "$db_url" -Atc \
  "SELECT string_agg(stripe_customer_id, ',') FROM customers WHERE stripe_customer_id IS NOT NULL")"
[ -n "$stripe_customers" ] || die "no customer has a Stripe customer id: is billing on?"

# --- wrk scripts (keys go to files only, never onto a command line) ----------

lua_keys() {
  printf 'local keys = {}\nfor line in io.lines("%s") do keys[#keys + 1] = line end\n' "$workdir/keys"
}
{
  lua_keys
  cat <<'LUA'
wrk.method = "POST"
wrk.body = '{"providers":["anthropic"],"ttl_minutes":60}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = keys[1]
LUA
} >"$workdir/exchange.lua"
sed 's#/api/v1/credentials/exchange##' "$workdir/exchange.lua" >"$workdir/reference.lua"

# Distinct fixes: each request names a new issue number; FIX_KEYS = 1 sends
# them all for one customer, more spreads them round-robin.
fix_lua() {
  lua_keys
  cat <<LUA
local spread = $1
local counter, thread_id = 0, 0
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
end
function request()
  counter = counter + 1
  local key = keys[((counter - 1) % spread) + 1]
  local n = thread_id * 100000000 + counter
  local body = string.format(
    '{"github_org":"bench","repo_name":"repo-%d","issue_number":%d,"pr_number":%d,' ..
    '"pr_title":"Fix","pr_url":"https://github.com/bench/repo/pull/%d","metadata":{}}',
    thread_id, n, n, n)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["x-api-key"] = key}, body)
end
LUA
}
fix_lua 1 >"$workdir/fix_one.lua"
fix_lua "$customers" >"$workdir/fix_many.lua"

# --- helpers -------------------------------------------------------------------

# wrk_run NAME URL [wrk args...] — runs wrk; leaves NAME's req/s and P99 (ms)
# in $workdir/NAME.rps and NAME.p99, and its output in NAME.out.
wrk_run() {
  local name="$1" url="$2"
  shift 2
  wrk -t2 -c"$connections" -d"${duration}s" --latency "$@" "$url" >"$workdir/$name.out" 2>&1 ||
    { cat "$workdir/$name.out" >&2; die "wrk failed for $name"; }
  awk '/Requests\/sec/ {print $2}' "$workdir/$name.out" >"$workdir/$name.rps"
  awk '$1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000}
       else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}
       printf "%.2f\n", v}' "$workdir/$name.out" >"$workdir/$name.p99"
  local non2xx
  non2xx="$(awk '/Non-2xx/ {print $NF}' "$workdir/$name.out")"
  [ -z "$non2xx" ] || log "  $name: $non2xx non-2xx answers (see the figures with care)"
}
figure() { cat "$workdir/$1"; }
ratio() { python3 -c "import sys; a, b = map(float, sys.argv[1:3]); print(f'{a / b:.2f}' if b else '-')" "$1" "$2"; }
REPORT=()
report() { REPORT+=("$(printf '%-44s %-26s %-26s %s' "$@")"); }

# --- 1. credential exchange vs reference ------------------------------------------

if wants exchange; then
log "exchange vs reference: ${duration}s each, $connections connections"
wrk_run reference "http://$reference_addr/reference" -s "$workdir/reference.lua"
wrk_run exchange "$base/api/v1/credentials/exchange" -s "$workdir/exchange.lua"
report "POST /api/v1/credentials/exchange" \
  "$(figure exchange.rps) req/s P99 $(figure exchange.p99) ms" \
  "$(figure reference.rps) req/s P99 $(figure reference.p99) ms" \
  "x$(ratio "$(figure exchange.rps)" "$(figure reference.rps)")  (target >= 0.5, P99 < 10 ms)"
fi

# --- 2. fix recording vs pgbench tpcb-like -----------------------------------------

if wants fixes; then
log "pgbench tpcb-like (scale 10): ${duration}s, $connections clients"
pgbench_url="$(url_with_database "$TEST_DATABASE_URL" "$pgbench_db")"
pgbench -q -i -s 10 "$pgbench_url" >/dev/null 2>&1
pgbench -c "$connections" -j 2 -T "$duration" -b tpcb-like "$pgbench_url" >"$workdir/pgbench.out" 2>&1
awk '/^tps/ {printf "%d\n", $3}' "$workdir/pgbench.out" | head -1 >"$workdir/pgbench.tps"

log "fix-attempts, distinct fixes, one customer"
wrk_run fix_one "$base/api/v1/fix-attempts" -s "$workdir/fix_one.lua"
log "fix-attempts, distinct fixes, $customers customers"
wrk_run fix_many "$base/api/v1/fix-attempts" -s "$workdir/fix_many.lua"
report "POST /api/v1/fix-attempts, 1 customer" \
  "$(figure fix_one.rps)/s P99 $(figure fix_one.p99) ms" \
  "pgbench $(figure pgbench.tps) tps" \
  "x$(ratio "$(figure fix_one.rps)" "$(figure pgbench.tps)")  (target >= 1000/s, P99 < 25 ms)"
report "POST /api/v1/fix-attempts, $customers customers" \
  "$(figure fix_many.rps)/s P99 $(figure fix_many.p99) ms" \
  "pgbench $(figure pgbench.tps) tps" \
  "x$(ratio "$(figure fix_many.rps)" "$(figure pgbench.tps)")  (target >= 0.5)"
drift="$(psql -w "$db_url" -Atc "SELECT count(*) FROM customers c WHERE c.credit_balance <>
  (SELECT coalesce(sum(amount), 0) FROM credit_ledger_entries e WHERE e.customer_id = c.id)")"
fixes_recorded="$(psql -w "$db_url" -Atc "SELECT count(*) FROM fixes")"
report "ledger after the fix runs" "$fixes_recorded fixes" "" \
  "$drift customers with Σ entries <> balance (must be 0)"
fi

# --- 3. webhooks: accepted, processed, lag -----------------------------------------

# sign_events FILE COUNT PREFIX — COUNT payment_method.attached events for the
# bench customers (round-robin), one "signature<TAB>body" line each, signed
# as Stripe does (HMAC-SHA256 of "t.body").
sign_events() {
  python3 - "$1" "$2" "$3" "$webhook_secret" "$stripe_customers" <<'PY'
import hashlib, hmac, json, sys, time
path, count, prefix, secret, customers = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5].split(",")
now = int(time.time())
with open(path, "w") as out:
    for n in range(count):
        body = json.dumps({
            "id": f"evt_{prefix}_{n}", "object": "event", "type": "payment_method.attached",
            "created": now, "livemode": False, "api_version": "2025-03-31.basil",
            "data": {"object": {"id": f"pm_{prefix}_{n}", "object": "payment_method",
                                "customer": customers[n % len(customers)], "type": "card"}},
        }, separators=(",", ":"))
        mac = hmac.new(secret.encode(), f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
        out.write(f"t={now},v1={mac}\t{body}\n")
PY
}
# webhook_lua FILE DELAY_MS — each request sends the next signed event once;
# once all are sent, the rest go to /health (not counted below).
webhook_lua() {
  cat <<LUA
local events = {}
for line in io.lines("$1") do events[#events + 1] = line end
local counter, thread_id, threads = 0, 0, 2
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread - 1)
end
function delay() return $2 end
function request()
  local index = counter * threads + thread_id + 1
  counter = counter + 1
  local line = events[index]
  if line == nil then return wrk.format("GET", "/health") end
  local tab = string.find(line, "\t", 1, true)
  return wrk.format("POST", "/webhooks/stripe",
    {["Content-Type"] = "application/json", ["Stripe-Signature"] = string.sub(line, 1, tab - 1)},
    string.sub(line, tab + 1))
end
LUA
}
# drain_seconds PREFIX — waits (at most 10 minutes) until every stored event
# of PREFIX is processed; prints the seconds from the first receipt to the
# last application, and the P99 lag (ms) from receipt to applied.
drain_stats() {
  local prefix="$1" waited=0
  until [ "$(psql -w "$db_url" -Atc "SELECT count(*) FROM stripe_events
      WHERE id LIKE 'evt\_${prefix}\_%' AND processed_at IS NULL")" = 0 ]; do
    waited=$((waited + 1))
    [ "$waited" -le 600 ] || { log "  events of $prefix still unprocessed after 10 minutes"; break; }
    sleep 1
  done
  psql -w "$db_url" -Atc "SELECT count(*) FILTER (WHERE processed_at IS NOT NULL),
      round(extract(epoch FROM max(processed_at) - min(received_at))::numeric, 2),
      round(1000 * extract(epoch FROM percentile_disc(0.99) WITHIN GROUP
        (ORDER BY processed_at - received_at))::numeric, 0)
    FROM stripe_events WHERE id LIKE 'evt\_${prefix}\_%'"
}

if wants webhooks; then
log "webhooks: $events signed events as fast as wrk sends them"
sign_events "$workdir/burst.events" "$events" burst
webhook_lua "$workdir/burst.events" 0 >"$workdir/burst.lua"
wrk -t2 -c"$connections" -d"${duration}s" -s "$workdir/burst.lua" "$base" >"$workdir/burst.out" 2>&1
accepted="$(psql -w "$db_url" -Atc "SELECT count(*) FROM stripe_events WHERE id LIKE 'evt\_burst\_%'")"
accept_seconds="$(psql -w "$db_url" -Atc "SELECT round(extract(epoch FROM max(received_at) - min(received_at))::numeric, 2)
  FROM stripe_events WHERE id LIKE 'evt\_burst\_%'")"
IFS='|' read -r processed drain_s burst_lag <<<"$(drain_stats burst)"
report "POST /webhooks/stripe accepted" \
  "$(python3 -c "print(round($accepted / max($accept_seconds, 0.001)))")/s ($accepted in ${accept_seconds} s)" "" ""
report "Stripe events processed (burst of $events)" \
  "$(python3 -c "print(round($processed / max($drain_s, 0.001)))")/s ($processed in ${drain_s} s)" "" \
  "target >= 1000/s"

paced_rate=500
paced=$((paced_rate * duration))
delay_ms=$((connections * 1000 / paced_rate))
log "webhooks: ~$paced_rate events/s for ${duration}s, lag from receipt to applied"
sign_events "$workdir/paced.events" "$paced" paced
webhook_lua "$workdir/paced.events" "$delay_ms" >"$workdir/paced.lua"
wrk -t2 -c"$connections" -d"${duration}s" -s "$workdir/paced.lua" "$base" >"$workdir/paced.out" 2>&1
IFS='|' read -r paced_done _ paced_lag <<<"$(drain_stats paced)"
report "Stripe event lag at ~$paced_rate/s, P99" "${paced_lag} ms ($paced_done events)" "" "target < 1000 ms"
inversions="$(psql -w "$db_url" -Atc "SELECT count(*) FROM (
    SELECT processed_at < lag(processed_at) OVER w AS inverted
    FROM stripe_events WHERE id LIKE 'evt\_%'
    WINDOW w AS (PARTITION BY payload->'data'->'object'->>'customer' ORDER BY received_at, id)
  ) t WHERE inverted")"
report "per-customer order" "$inversions events applied before an earlier one" "" "target 0"
fi

# --- 4. pages ----------------------------------------------------------------------

if wants pages; then
log "pages: GET / and GET /login"
wrk_run home "$base/"
wrk_run login "$base/login"
report "GET /" "$(figure home.rps) req/s P99 $(figure home.p99) ms" \
  "$(figure reference.rps) req/s (reference)" "target >= 5000 req/s, P99 < 20 ms"
report "GET /login" "$(figure login.rps) req/s P99 $(figure login.p99) ms" \
  "$(figure reference.rps) req/s (reference)" "target >= 5000 req/s, P99 < 20 ms"
fi

# --- 5. bundle, headers, memory ------------------------------------------------------

# The bundle this build linked: hashed names from hash.txt beside the binary,
# as served (the precompressed .br / .gz copies). Built with --split (the
# lazy routes of docs/wip/split-bundles.patch), a first load fetches the JS
# glue, the main WASM, the split loader and the chunks of its page's lazy
# route (the preloads the server adds from __wasm_split_manifest): a page's
# figure is then the sum of those files, and admin routes' own chunks must
# not be among a customer page's.
if wants bundle; then
hash_of() { awk -F': *' -v kind="$1" '$1 == kind {print "." $2}' "$CARGO_TARGET_DIR/release/hash.txt" 2>/dev/null; }
wasm="target/site/pkg/rsolv-platform$(hash_of wasm).wasm"
js="target/site/pkg/rsolv-platform$(hash_of js).js"
[ -f "$wasm" ] || wasm="target/site/pkg/rsolv-platform_bg.wasm"
while IFS='|' read -r label figure target; do
  report "$label" "$figure" "" "$target"
done < <(python3 - target/site/pkg "$(basename "$wasm")" "$(basename "$js")" <<'PY'
import glob, json, os, sys

pkg, main_wasm, main_js = sys.argv[1:4]

def sizes(name):
    path = os.path.join(pkg, name)
    if not os.path.exists(path):  # unhashed name in the manifest
        path = (glob.glob(os.path.join(pkg, name.rsplit(".", 1)[0] + ".*." + name.rsplit(".", 1)[1])) or [path])[0]
    raw = os.path.getsize(path)
    br = os.path.getsize(path + ".br") if os.path.exists(path + ".br") else raw
    gz = os.path.getsize(path + ".gz") if os.path.exists(path + ".gz") else raw
    return raw, gz, br

def total(names):
    return [sum(col) for col in zip(*(sizes(n) for n in names))] if names else [0, 0, 0]

kb = lambda n: f"{n // 1024:,}"
base = [main_wasm, main_js]
base += [os.path.basename(p) for p in glob.glob(os.path.join(pkg, "__wasm_split*.js"))]
raw, gz, br = total(base)
manifests = glob.glob(os.path.join(pkg, "__wasm_split_manifest*.json"))
if not manifests:
    print(f"hydrate bundle, every page (JS glue + WASM)|{kb(raw)} KB raw, {kb(gz)} KB gzip, {kb(br)} KB brotli|target < 300 KB compressed")
    sys.exit()
print(f"main bundle (glue, WASM, split loader)|{kb(raw)} KB raw, {kb(gz)} KB gzip, {kb(br)} KB brotli|")
manifest = json.load(open(manifests[0]))
route = lambda key: key.strip("_").split("_route_view")[0]
chunks = {route(k): [f + ".wasm" for f in v] for k, v in manifest.items() if "_route_view" in k}
admin = {c for r, cs in chunks.items() if r.startswith("admin") or r == "two_factor" for c in cs}
admin_only = admin - {c for r, cs in chunks.items() if not (r.startswith("admin") or r == "two_factor") for c in cs}
everything = sorted({c for cs in chunks.values() for c in cs})
raw_all, gz_all, br_all = total(everything)
print(f"all chunks ({len(everything)} files)|{kb(raw_all)} KB raw, {kb(gz_all)} KB gzip, {kb(br_all)} KB brotli|")
for page in ["home", "login", "dashboard", "keys", "credits", "billing", "admin_customers", "admin_customer"]:
    files = chunks.get(page, [])
    r, g, b = total(files)
    leaked = len(set(files) & admin_only) if not page.startswith("admin") else 0
    note = "" if page.startswith("admin") else f"target < 300 KB compressed; admin-only chunks: {leaked}"
    print(f"first load /{page.replace('_', '/', 1) if page.startswith('admin_') else page} ({len(files)} chunks)|{kb(b + br)} KB brotli, {kb(g + gz)} KB gzip|{note}")
PY
)
served="$(curl -s -o /dev/null -D - -H 'Accept-Encoding: br, gzip' "$base/pkg/$(basename "$wasm")" |
  tr -d '\r' | grep -iE '^(content-encoding|cache-control|content-length):' | tr '\n' ' ')"
report "bundle as served" "${served:-no encoding or cache headers}" "" \
  "target: precompressed, hashed name, Cache-Control immutable"
rss_kb="$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")"
report "server peak RSS after the run" "$((rss_kb / 1024)) MB" "" "target < 150 MB"
fi

# --- 6. mixed: two instances and a worker process -----------------------------------

if wants mixed; then
log "mixed: 2 x serve --no-job-worker + worker; exchange, fixes and webhooks at once for ${duration}s"
kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
server_pid=""
mix_ports="$(free_ports)"
addr_a="127.0.0.1:${mix_ports% *}"
addr_b="127.0.0.1:${mix_ports#* }"
LEPTOS_SITE_ADDR="$addr_a" "$server_bin" serve --no-job-worker >"$workdir/serve_a.log" 2>&1 &
pid_a=$!
LEPTOS_SITE_ADDR="$addr_b" "$server_bin" serve --no-job-worker >"$workdir/serve_b.log" 2>&1 &
pid_b=$!
"$server_bin" worker >"$workdir/worker.log" 2>&1 &
pid_w=$!
mixed_pids="$pid_a $pid_b $pid_w"
for _ in $(seq 1 300); do
  curl -sf "http://$addr_a/health" >/dev/null && curl -sf "http://$addr_b/health" >/dev/null && break
  for pid in $mixed_pids; do
    kill -0 "$pid" 2>/dev/null || { cat "$workdir"/serve_*.log "$workdir/worker.log" >&2; die "a mixed-run process exited"; }
  done
  sleep 0.1
done
mix_rate=250
mix_events=$((mix_rate * duration))
mix_conns=$(( connections / 4 > 2 ? connections / 4 : 2 ))
mix_delay=$((mix_conns * 1000 / mix_rate))
sign_events "$workdir/mixa.events" "$mix_events" mixa
sign_events "$workdir/mixb.events" "$mix_events" mixb
webhook_lua "$workdir/mixa.events" "$mix_delay" >"$workdir/mixa.lua"
webhook_lua "$workdir/mixb.events" "$mix_delay" >"$workdir/mixb.lua"
sed 's/repo-%d/mix-repo-%d/' "$workdir/fix_many.lua" >"$workdir/fix_mix.lua"
fixes_before="$(psql -w "$db_url" -Atc "SELECT count(*) FROM fixes")"
mix_wrk() { # NAME URL [wrk args...]
  local name="$1" url="$2"
  shift 2
  wrk -t1 -c"$mix_conns" -d"${duration}s" --latency "$@" "$url" >"$workdir/$name.out" 2>&1
}
mix_wrk mix_exchange "http://$addr_a/api/v1/credentials/exchange" -s "$workdir/exchange.lua" &
w1=$!
mix_wrk mix_fix "http://$addr_b/api/v1/fix-attempts" -s "$workdir/fix_mix.lua" &
w2=$!
mix_wrk mix_hooks_a "http://$addr_a" -s "$workdir/mixa.lua" &
w3=$!
mix_wrk mix_hooks_b "http://$addr_b" -s "$workdir/mixb.lua" &
w4=$!
wait "$w1" "$w2" "$w3" "$w4" || log "  a mixed-run wrk failed (see its figures with care)"
mix_rps() { awk '/Requests\/sec/ {print $2}' "$workdir/$1.out"; }
mix_2xx() { # completed responses minus non-2xx
  awk '/requests in/ {n = $1} /Non-2xx/ {e = $NF} END {print n - e}' "$workdir/$1.out"
}
IFS='|' read -r mixa_done _ mixa_lag <<<"$(drain_stats mixa)"
IFS='|' read -r mixb_done _ mixb_lag <<<"$(drain_stats mixb)"
mix_stored="$(psql -w "$db_url" -Atc "SELECT count(*) FROM stripe_events WHERE id LIKE 'evt\_mix%'")"
mix_not_once="$(psql -w "$db_url" -Atc "SELECT count(*) FROM stripe_events e
  WHERE e.id LIKE 'evt\_mix%' AND (e.status <> 'processed' OR e.attempts <> 1
    OR (SELECT count(*) FROM jobs j WHERE j.dedupe_key = 'stripe.process_event:' || e.id
        AND j.status = 'done') <> 1)")"
mix_fixes="$(psql -w "$db_url" -Atc "SELECT count(*) - $fixes_before FROM fixes")"
mix_fix_ledger="$(psql -w "$db_url" -Atc "SELECT count(*) FROM fixes f WHERE f.repository LIKE '%mix-repo-%'
  AND (SELECT count(*) FROM credit_ledger_entries e WHERE e.idempotency_key = 'fix:' || f.id) <> 1")"
mix_drift="$(psql -w "$db_url" -Atc "SELECT count(*) FROM customers c WHERE c.credit_balance <>
  (SELECT coalesce(sum(amount), 0) FROM credit_ledger_entries e WHERE e.customer_id = c.id)")"
mix_inversions="$(psql -w "$db_url" -Atc "SELECT count(*) FROM (
    SELECT processed_at < lag(processed_at) OVER w AS inverted
    FROM stripe_events WHERE id LIKE 'evt\_mix%'
    WINDOW w AS (PARTITION BY payload->'data'->'object'->>'customer' ORDER BY received_at, id)
  ) t WHERE inverted")"
rss_of() { awk '/VmHWM/ {printf "%d MB", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "-"; }
report "mixed: exchange on A" "$(mix_rps mix_exchange) req/s" "" ""
report "mixed: fix-attempts on B" "$(mix_rps mix_fix) req/s, $(mix_2xx mix_fix) 2xx" "" ""
report "mixed: webhooks stored (A + B)" "$mix_stored (applied $((mixa_done + mixb_done)))" "" \
  "lag P99 A ${mixa_lag} ms, B ${mixb_lag} ms (target < 1000)"
report "mixed: webhooks not applied exactly once" "$mix_not_once" "" "must be 0"
report "mixed: per-customer order" "$mix_inversions inversions" "" "must be 0"
report "mixed: fixes recorded" "$mix_fixes (>= $(mix_2xx mix_fix) 2xx)" "" \
  "$mix_fix_ledger without exactly one ledger entry (must be 0)"
report "mixed: ledger" "$mix_drift customers with Σ entries <> balance" "" "must be 0"
report "mixed: peak RSS" "serve A $(rss_of "$pid_a"), serve B $(rss_of "$pid_b"), worker $(rss_of "$pid_w")" "" \
  "target < 150 MB each"
fi

echo
log "Results ($(nproc) cores, ${duration}s per path, $connections connections; $(date -u +%FT%TZ))"
printf '%-44s %-26s %-26s %s\n' "path" "measured" "reference" "ratio / target"
printf '%s\n' "${REPORT[@]}"
