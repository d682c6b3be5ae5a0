#!/usr/bin/env bash
# Runs every test of the platform; .ci/run calls it.
#
#   ./scripts/test.sh
#
# Installs what is missing (and says so): the wasm32 Rust target, cargo-leptos
# 0.3.10, the wasm-bindgen CLI matching Cargo.lock, the npm build tools,
# Playwright (npm, in end2end/), Debian's Chromium, the SMTP sink MailDev (npm,
# in tools/smtp-sink/; started on free ports for the whole run, its addresses
# exported as TEST_SMTP_HOST, TEST_SMTP_PORT and TEST_SMTP_API_URL),
# localstripe (PyPI, in a virtualenv under ~/.cache/rsolv-platform; started on
# 127.0.0.1 for the whole run, its URL exported as TEST_STRIPE_API_BASE) and,
# when TEST_DATABASE_URL is not set, a local PostgreSQL. Then it runs, in order:
#   1. cargo fmt --check
#   2. cargo clippy --features ssr --all-targets -- -D warnings
#   3. cargo test --features ssr            (unit tests, the layer check tests/layers.rs,
#                                            integration tests; TEST_DATABASE_URL: an admin database)
#   3b. scripts/check-ops.sh                (promtool check/test rules on ops/prometheus, the
#                                            dashboard's queries; promtool from Debian's prometheus)
#   4. cargo leptos build
#   5. Playwright in end2end/ against the built server, on a fresh database
# Every step runs even when an earlier one failed (except 5, which needs 4);
# the script exits non-zero when any failed. Of .env it reads only
# TEST_DATABASE_URL, so a developer's settings cannot change the results.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
cd "$RSOLV_ROOT"

if [ -z "${TEST_DATABASE_URL:-}" ] && [ -f .env ]; then
  TEST_DATABASE_URL="$(
    set -a
    # shellcheck source=/dev/null
    . ./.env >/dev/null
    printf '%s' "${TEST_DATABASE_URL:-}"
  )"
fi

ensure_build_tools
ensure_npm_packages "$RSOLV_ROOT/end2end"
ensure_chromium
ensure_promtool

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  ensure_local_postgres
  TEST_DATABASE_URL="$PG_ADMIN_URL"
else
  ensure_psql
fi
export TEST_DATABASE_URL
log "Test database server: $(redact_url "$TEST_DATABASE_URL")"

E2E_DB=""
drop_e2e_database() {
  if [ -n "$E2E_DB" ]; then
    log "Dropping database $E2E_DB"
    drop_database "$TEST_DATABASE_URL" "$E2E_DB" || log "could not drop database $E2E_DB"
    E2E_DB=""
  fi
}
cleanup() {
  drop_e2e_database
  stop_localstripe
  stop_smtp_sink
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The integration tests deliver email to it; the end-to-end server does too.
ensure_smtp_sink
log "SMTP sink: smtp://$TEST_SMTP_HOST:$TEST_SMTP_PORT, messages at $TEST_SMTP_API_URL/email"

ensure_localstripe
# shellcheck disable=SC2119  # no data file: an in-memory store
start_localstripe
export TEST_STRIPE_API_BASE="$LOCALSTRIPE_URL"

SUMMARY=()
FAILED=0

# step NAME COMMAND... — runs COMMAND, records the outcome and its duration.
step() {
  local name="$1"
  shift
  local started=$SECONDS
  log "$name"
  if "$@"; then
    SUMMARY+=("ok      $name ($((SECONDS - started)) s)")
    return 0
  fi
  SUMMARY+=("FAILED  $name ($((SECONDS - started)) s)")
  FAILED=1
  return 1
}

# Playwright against the built server, on a database made for this run, with
# Stripe pointing at localstripe (its fake Stripe.js serves the card form).
run_end2end() {
  local db_url
  db_url="$(url_with_database "$TEST_DATABASE_URL" "$E2E_DB")"
  (
    cd end2end &&
      DATABASE_URL="$db_url" RSOLV_SERVER_BIN="$SERVER_BIN" RSOLV_ROOT="$RSOLV_ROOT" \
        EMAIL_TRANSPORT=smtp SMTP_HOST="$TEST_SMTP_HOST" SMTP_PORT="$TEST_SMTP_PORT" SMTP_TLS=none \
        EMAIL_POLL_INTERVAL_SECONDS=1 \
        STRIPE_API_BASE="$LOCALSTRIPE_URL" STRIPE_SECRET_KEY=sk_test_rsolv_e2e \
        STRIPE_PUBLISHABLE_KEY=pk_test_rsolv_e2e STRIPE_JS_URL="$LOCALSTRIPE_URL/js.stripe.com/v3/" \
        npx --no -- playwright test
  )
}

step "cargo fmt --check" cargo fmt --check || true
step "cargo clippy --features ssr --all-targets -- -D warnings" \
  cargo clippy --features ssr --all-targets -- -D warnings || true
step "cargo test --features ssr" cargo test --features ssr || true
step "alert rules and dashboard: scripts/check-ops.sh (promtool)" ./scripts/check-ops.sh || true

if step "cargo leptos build" cargo leptos build; then
  E2E_DB="rsolv_e2e_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  log "Creating database $E2E_DB for the end-to-end run"
  psql -w "$TEST_DATABASE_URL" -qc "CREATE DATABASE \"$E2E_DB\""
  step "end-to-end: npx playwright test (end2end/, Chromium)" run_end2end || true
  drop_e2e_database
else
  SUMMARY+=("skipped end-to-end: npx playwright test (needs cargo leptos build)")
fi

echo
log "Summary"
printf '  %s\n' "${SUMMARY[@]}"
if [ "$FAILED" -ne 0 ]; then
  log "Some steps FAILED"
  exit 1
fi
log "All steps passed"
