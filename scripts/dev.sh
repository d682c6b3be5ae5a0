#!/usr/bin/env bash
# Runs the platform locally at http://127.0.0.1:3000.
#
#   ./scripts/dev.sh
#
# Installs what is missing (and says so): the wasm32 Rust target, cargo-leptos
# 0.3.10, the wasm-bindgen CLI matching Cargo.lock, the npm build tools
# (Tailwind CSS, binaryen) and, when DATABASE_URL is not set, a local
# PostgreSQL with the database rsolv_dev (when DATABASE_URL is set, it only
# creates that database if its server answers and it is missing), and, when
# STRIPE_API_BASE is not set, localstripe (PyPI) on 127.0.0.1 with its data
# kept in ~/.cache/rsolv-platform/localstripe-dev.pickle, delivering its
# webhooks to this server. Then it
# builds the site with `cargo leptos build`, applies pending migrations and
# serves.
# Settings come from .env when present (see .env.example).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
cd "$RSOLV_ROOT"

load_dotenv
ensure_build_tools

if [ -z "${DATABASE_URL:-}" ]; then
  ensure_local_postgres
  ensure_database "$PG_ADMIN_URL" rsolv_dev
  DATABASE_URL="$(url_with_database "$PG_ADMIN_URL" rsolv_dev)"
  export DATABASE_URL
else
  # Create the configured database when its server answers and it is missing.
  ensure_psql
  db_name="$(url_database_name "$DATABASE_URL")"
  admin_url="$(url_with_database "$DATABASE_URL" postgres)"
  if [ -n "$db_name" ] && pg_url_works "$admin_url"; then
    ensure_database "$admin_url" "$db_name" ||
      log "Could not create database $db_name; the server will report what is wrong"
  fi
fi

if [ -z "${PROVIDER_ANTHROPIC_API_KEY:-}${PROVIDER_OPENAI_API_KEY:-}${PROVIDER_OPENROUTER_API_KEY:-}" ]; then
  export PROVIDER_ANTHROPIC_API_KEY=dev-anthropic-credential
  export PROVIDER_OPENAI_API_KEY=dev-openai-credential
  export PROVIDER_OPENROUTER_API_KEY=dev-openrouter-credential
  log "No PROVIDER_*_API_KEY is set: /api/v1/credentials/exchange will vend placeholder"
  log "credentials (dev-anthropic-credential, ...). Put real keys in .env to vend real ones."
fi

if [ -z "${STRIPE_API_BASE:-}" ]; then
  ensure_localstripe
  start_localstripe "${HOME:?}/.cache/rsolv-platform/localstripe-dev.pickle"
  export STRIPE_API_BASE="$LOCALSTRIPE_URL"
  export STRIPE_SECRET_KEY="${STRIPE_SECRET_KEY:-sk_test_rsolv_dev}"
  export STRIPE_WEBHOOK_SECRETS="${STRIPE_WEBHOOK_SECRETS:-whsec_rsolv_dev_localstripe}"
  # The portal's card form uses localstripe's stand-in for Stripe.js.
  export STRIPE_PUBLISHABLE_KEY="${STRIPE_PUBLISHABLE_KEY:-pk_test_rsolv_dev}"
  export STRIPE_JS_URL="${STRIPE_JS_URL:-$LOCALSTRIPE_URL/js.stripe.com/v3/}"
  register_localstripe_webhook "http://${LEPTOS_SITE_ADDR:-127.0.0.1:3000}/webhooks/stripe" \
    "${STRIPE_WEBHOOK_SECRETS%%,*}"
  log "Stripe: localstripe at $STRIPE_API_BASE (webhook secret ${STRIPE_WEBHOOK_SECRETS%%,*});"
  log "  try: $SERVER_BIN stripe-trigger tests/fixtures/stripe/invoice.paid.json --customer cus_..."
fi

log "Building the site (cargo leptos build)"
cargo leptos build

log "Database: $(redact_url "$DATABASE_URL")"
log "Serving the platform at http://${LEPTOS_SITE_ADDR:-127.0.0.1:3000} (Ctrl-C stops it)"
exec "$SERVER_BIN" serve --migrate
