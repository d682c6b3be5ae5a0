# shellcheck shell=bash
# shellcheck disable=SC2034  # SERVER_BIN, PG_ADMIN_URL: read by the scripts that source this file
# Helpers shared by scripts/dev.sh and scripts/test.sh. Source it; don't run it.
#
# Every ensure_* function is idempotent: it returns at once when what it
# ensures is already there, and says what it installs otherwise. Everything
# comes from registries this project may use: crates.io (cargo install),
# rustup's targets, the npm registry (npm ci) and Debian (apt-get). Nothing is
# downloaded from GitHub.

RSOLV_ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
export RSOLV_ROOT

# One target directory outside the clone, so a fresh clone (CI) reuses the
# previous build on the same machine. cargo and cargo-leptos both honour it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:?}/.cache/rsolv-platform/target}"
# Where `cargo leptos build` (debug) puts the server binary.
SERVER_BIN="$CARGO_TARGET_DIR/debug/rsolv-platform"
# CI builds each fresh clone at a new path, so incremental caches (gigabytes
# per path) would only pile up in the shared target directory.
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL=0
fi

CARGO_LEPTOS_VERSION="0.3.10"
PG_HOST="127.0.0.1"
PG_PORT="5432"

if [ -d "$HOME/.cargo/bin" ]; then
  case ":$PATH:" in
    *":$HOME/.cargo/bin:"*) ;;
    *) PATH="$HOME/.cargo/bin:$PATH" ;;
  esac
fi
export PATH

log() { printf '==> %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Runs a command as root (directly, or through sudo).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "root is needed to run: $*"
  fi
}

# apt_install PACKAGE... — apt-get update + install, retried once on failure.
apt_install() {
  log "Installing Debian packages: $*"
  local attempt
  for attempt in 1 2; do
    if as_root apt-get update -qq &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; then
      return 0
    fi
    if [ "$attempt" -eq 1 ]; then
      log "apt-get failed; retrying once in 10 s"
      sleep 10
    fi
  done
  die "apt-get install $* failed twice"
}

# Loads .env from the repository root, exporting every variable it sets.
load_dotenv() {
  if [ -f "$RSOLV_ROOT/.env" ]; then
    log "Loading settings from .env"
    set -a
    # shellcheck source=/dev/null
    . "$RSOLV_ROOT/.env"
    set +a
  fi
}

# Cargo version settings for installing tools: no LTO and many codegen units
# cut cargo-leptos's build from ~45 to ~11 CPU-minutes. The project's own
# target directory is left alone (cargo install builds in a temporary one).
cargo_install() {
  env -u CARGO_TARGET_DIR \
    CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install "$@"
}

ensure_rust() {
  command -v cargo >/dev/null 2>&1 ||
    die "cargo is not installed: install Rust with rustup (https://rustup.rs), then run this again"
  local component
  for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
      log "Adding the Rust component $component (rustup)"
      rustup component add "$component"
    fi
  done
}

ensure_wasm_target() {
  if [ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-unknown-unknown" ]; then
    return 0
  fi
  log "Adding the Rust target wasm32-unknown-unknown (rustup)"
  rustup target add wasm32-unknown-unknown
}

ensure_cargo_leptos() {
  local have
  have="$(cargo-leptos --version 2>/dev/null | awk '{print $2}' || true)"
  if [ "$have" = "$CARGO_LEPTOS_VERSION" ]; then
    return 0
  fi
  log "Installing cargo-leptos $CARGO_LEPTOS_VERSION from crates.io (found: ${have:-none}; ~11 min on 2 cores)"
  cargo_install --locked --force cargo-leptos --version "$CARGO_LEPTOS_VERSION" --features no_downloads
  have="$(cargo-leptos --version 2>/dev/null | awk '{print $2}' || true)"
  [ "$have" = "$CARGO_LEPTOS_VERSION" ] ||
    die "cargo-leptos on PATH is ${have:-missing} after installing $CARGO_LEPTOS_VERSION ($(command -v cargo-leptos || true))"
}

# Prints the wasm-bindgen version that Cargo.lock resolves.
wasm_bindgen_lock_version() {
  awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' \
    "$RSOLV_ROOT/Cargo.lock"
}

# The wasm-bindgen CLI must be exactly the version of the wasm-bindgen crate.
ensure_wasm_bindgen() {
  if [ ! -f "$RSOLV_ROOT/Cargo.lock" ]; then
    log "Cargo.lock is missing: generating it"
    (cd "$RSOLV_ROOT" && cargo generate-lockfile)
  fi
  local want have
  want="$(wasm_bindgen_lock_version)"
  [ -n "$want" ] || die "Cargo.lock has no wasm-bindgen package"
  have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
  if [ "$have" = "$want" ]; then
    return 0
  fi
  # Without --locked: wasm-bindgen-cli's own lock pins a crate the index lacks.
  log "Installing wasm-bindgen-cli $want from crates.io (found: ${have:-none}; ~2 min)"
  cargo_install --force wasm-bindgen-cli --version "$want"
  have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
  [ "$have" = "$want" ] ||
    die "wasm-bindgen on PATH is ${have:-missing} after installing $want ($(command -v wasm-bindgen || true))"
}

ensure_node() {
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    return 0
  fi
  apt_install nodejs npm
}

# ensure_npm_packages DIR — `npm ci` in DIR when node_modules is missing or
# older than package.json / package-lock.json. npm writes
# node_modules/.package-lock.json last, so it marks a finished install.
# A node_modules that is a symbolic link (shared between work trees) is left
# alone: `npm ci` would empty the directory it points to.
ensure_npm_packages() {
  local dir="$1"
  local stamp="$dir/node_modules/.package-lock.json"
  if [ -L "$dir/node_modules" ]; then
    [ -f "$stamp" ] ||
      die "${dir/#"$RSOLV_ROOT"/.}/node_modules is a symbolic link to a directory without packages: run npm ci there"
    return 0
  fi
  if [ -f "$stamp" ] && [ ! "$dir/package-lock.json" -nt "$stamp" ] &&
    [ ! "$dir/package.json" -nt "$stamp" ]; then
    return 0
  fi
  log "Installing npm packages in ${dir/#"$RSOLV_ROOT"/.} (npm ci)"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund)
}

# The front-end tools cargo-leptos needs: it puts ./node_modules/.bin first on
# PATH (tailwindcss, wasm-opt from binaryen).
ensure_build_tools() {
  ensure_rust
  ensure_wasm_target
  ensure_cargo_leptos
  ensure_wasm_bindgen
  ensure_node
  ensure_npm_packages "$RSOLV_ROOT"
}

ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then
    return 0
  fi
  apt_install chromium
}

# promtool (checks and unit-tests the Prometheus alert rules in ops/), from
# Debian's prometheus package. Only the tool is unpacked, into
# ~/.cache/rsolv-platform/promtool (apt-get download + dpkg-deb -x): no
# Prometheus server is installed or started. Sets PROMTOOL.
PROMTOOL_DIR="${HOME:?}/.cache/rsolv-platform/promtool"
ensure_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    PROMTOOL="$(command -v promtool)"
    return 0
  fi
  PROMTOOL="$PROMTOOL_DIR/usr/bin/promtool"
  if [ -x "$PROMTOOL" ]; then
    return 0
  fi
  log "Unpacking promtool from Debian's prometheus package into $PROMTOOL_DIR"
  local tmp attempt
  tmp="$(mktemp -d)"
  for attempt in 1 2; do
    if (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
      break
    fi
    as_root apt-get update -qq || true
  done
  local deb
  deb="$(find "$tmp" -name 'prometheus_*.deb' | head -n 1)"
  [ -n "$deb" ] || die "apt-get download prometheus failed"
  mkdir -p "$PROMTOOL_DIR"
  dpkg-deb -x "$deb" "$PROMTOOL_DIR"
  rm -rf "$tmp"
  [ -x "$PROMTOOL" ] || die "promtool not found in $deb"
}

# psql and pg_isready (Debian's postgresql-client).
ensure_psql() {
  if command -v psql >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1; then
    return 0
  fi
  apt_install postgresql-client
}

# True when psql can run a query through URL without asking for a password.
pg_url_works() {
  env -u PGPASSWORD PGCONNECT_TIMEOUT=5 psql -w "$1" -Atqc 'select 1' >/dev/null 2>&1
}

# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 (installing and
# starting Debian's when needed) and sets PG_ADMIN_URL to a working URL of its
# admin database "postgres": without a password where the server trusts local
# TCP connections, otherwise with the password "postgres" (set here for the
# user postgres on a freshly installed, local-only cluster).
ensure_local_postgres() {
  ensure_psql
  if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
    if ! ls /etc/postgresql/*/main/postgresql.conf >/dev/null 2>&1; then
      apt_install postgresql
    fi
    local version
    version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
    [ -n "$version" ] || die "no PostgreSQL cluster under /etc/postgresql"
    log "Starting PostgreSQL $version (cluster main)"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
      log "pg_ctlcluster returned an error; waiting for the server anyway"
    local tries=0
    until pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; do
      tries=$((tries + 1))
      [ "$tries" -le 30 ] || die "PostgreSQL did not answer on $PG_HOST:$PG_PORT within 30 s"
      sleep 1
    done
  fi

  local trust="postgres://postgres@$PG_HOST:$PG_PORT/postgres"
  local password="postgres://postgres:postgres@$PG_HOST:$PG_PORT/postgres"
  if pg_url_works "$trust"; then
    PG_ADMIN_URL="$trust"
  elif pg_url_works "$password"; then
    PG_ADMIN_URL="$password"
  else
    log "Setting the password of the PostgreSQL user postgres to 'postgres' (local server only)"
    as_root su postgres -s /bin/sh -c "cd / && psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
    pg_url_works "$password" ||
      die "cannot connect to PostgreSQL at $PG_HOST:$PG_PORT as postgres (tried trust and password auth)"
    PG_ADMIN_URL="$password"
  fi
}

# url_with_database URL NAME — prints URL with its database replaced by NAME.
url_with_database() {
  local url="$1" name="$2"
  local base="${url%%\?*}"
  local query="${url#"$base"}"
  local scheme="${base%%://*}"
  local rest="${base#*://}"
  local authority="${rest%%/*}"
  printf '%s://%s/%s%s\n' "$scheme" "$authority" "$name" "$query"
}

# url_database_name URL — prints the database name in URL (empty if none).
url_database_name() {
  local base="${1%%\?*}"
  local rest="${base#*://}"
  case "$rest" in
    */*) printf '%s\n' "${rest#*/}" ;;
    *) printf '\n' ;;
  esac
}

# Prints URL with any password replaced by ***.
redact_url() {
  printf '%s\n' "$1" | sed -E 's#^([a-z]+://[^:/@]*):[^@]*@#\1:***@#'
}

# ensure_database ADMIN_URL NAME — creates database NAME when it is missing.
ensure_database() {
  local admin_url="$1" name="$2" exists
  exists="$(psql -w "$admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$name'")"
  if [ "$exists" != "1" ]; then
    log "Creating database $name"
    psql -w "$admin_url" -qc "CREATE DATABASE \"$name\""
  fi
}

# drop_database ADMIN_URL NAME — drops database NAME, closing its connections.
drop_database() {
  psql -w "$1" -qc "DROP DATABASE IF EXISTS \"$2\" WITH (FORCE)"
}

# --- localstripe (a Stripe-API-compatible server from PyPI; see STRIPE.md) --

LOCALSTRIPE_VERSION="1.15.10"
LOCALSTRIPE_VENV="${HOME:?}/.cache/rsolv-platform/localstripe-venv"
LOCALSTRIPE_PID=""

# Installs localstripe into its own virtualenv (python3 -m venv + pip) unless
# the right version is there already.
ensure_localstripe() {
  local python="$LOCALSTRIPE_VENV/bin/python"
  if [ -x "$python" ] &&
    [ "$("$python" -c 'import importlib.metadata as m; print(m.version("localstripe"))' 2>/dev/null || true)" = "$LOCALSTRIPE_VERSION" ]; then
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || apt_install python3
  log "Installing localstripe $LOCALSTRIPE_VERSION from PyPI into ${LOCALSTRIPE_VENV/#"$HOME"/\~} (~35 s)"
  rm -rf "$LOCALSTRIPE_VENV"
  if ! python3 -m venv "$LOCALSTRIPE_VENV" 2>/dev/null; then
    rm -rf "$LOCALSTRIPE_VENV"
    apt_install python3-venv
    python3 -m venv "$LOCALSTRIPE_VENV"
  fi
  "$LOCALSTRIPE_VENV/bin/pip" install --quiet --disable-pip-version-check "localstripe==$LOCALSTRIPE_VERSION"
}

# start_localstripe [DATA_FILE] — starts localstripe on 127.0.0.1 on a free
# port (scripts/localstripe_server.py) and sets LOCALSTRIPE_PID and
# LOCALSTRIPE_URL. Without DATA_FILE its store lives in memory only.
start_localstripe() {
  local port_file
  port_file="$(mktemp -u "${TMPDIR:-/tmp}/rsolv-localstripe.XXXXXX")"
  "$LOCALSTRIPE_VENV/bin/python" "$RSOLV_ROOT/scripts/localstripe_server.py" "$port_file" "$@" \
    >"$port_file.log" 2>&1 &
  LOCALSTRIPE_PID=$!
  local tries=0
  until [ -s "$port_file" ]; do
    if ! kill -0 "$LOCALSTRIPE_PID" 2>/dev/null; then
      cat "$port_file.log" >&2
      LOCALSTRIPE_PID=""
      die "localstripe exited before listening"
    fi
    tries=$((tries + 1))
    [ "$tries" -le 300 ] || die "localstripe did not start within 30 s"
    sleep 0.1
  done
  LOCALSTRIPE_URL="http://127.0.0.1:$(cat "$port_file")"
  rm -f "$port_file"
  log "localstripe listening on $LOCALSTRIPE_URL (pid $LOCALSTRIPE_PID)"
}

# Stops the localstripe started by start_localstripe, if any.
stop_localstripe() {
  if [ -n "$LOCALSTRIPE_PID" ]; then
    kill "$LOCALSTRIPE_PID" 2>/dev/null || true
    wait "$LOCALSTRIPE_PID" 2>/dev/null || true
    LOCALSTRIPE_PID=""
  fi
}

# register_localstripe_webhook URL SECRET — makes localstripe deliver its
# events to URL, signed with SECRET (POST /_config/webhooks/<id>).
register_localstripe_webhook() {
  "$LOCALSTRIPE_VENV/bin/python" - "$LOCALSTRIPE_URL" "$1" "$2" <<'PY'
import sys, urllib.parse, urllib.request
base, url, secret = sys.argv[1:4]
data = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
urllib.request.urlopen(urllib.request.Request(base + "/_config/webhooks/rsolv_dev", data=data), timeout=10).read()
PY
}
# --- SMTP sink for the tests ---------------------------------------------------

# The SMTP sink the integration tests (cargo test) and the end-to-end specs
# deliver to: MailDev (npm package `maildev`, pinned in tools/smtp-sink/).
SMTP_SINK_PID=""

# Prints two free TCP ports on 127.0.0.1, separated by a space.
free_ports() {
  node -e '
    const net = require("net");
    const a = net.createServer(), b = net.createServer();
    a.listen(0, "127.0.0.1", () => b.listen(0, "127.0.0.1", () => {
      console.log(a.address().port + " " + b.address().port);
      a.close(); b.close();
    }));'
}

# ensure_smtp_sink — installs MailDev (npm ci in tools/smtp-sink/) when
# missing, starts it on free loopback ports and exports:
#   TEST_SMTP_HOST     127.0.0.1
#   TEST_SMTP_PORT     its SMTP port (plain text, no login)
#   TEST_SMTP_API_URL  its REST API, e.g. http://127.0.0.1:PORT; read messages
#                      with GET $TEST_SMTP_API_URL/email (JSON list; filter with
#                      ?to.address=user@example.com), one with GET /email/<id>,
#                      delete all with DELETE /email/all
# Call stop_smtp_sink when done (test.sh does it in its EXIT trap).
ensure_smtp_sink() {
  if [ -n "$SMTP_SINK_PID" ] && kill -0 "$SMTP_SINK_PID" 2>/dev/null; then
    return 0
  fi
  ensure_node
  ensure_npm_packages "$RSOLV_ROOT/tools/smtp-sink"
  local ports smtp_port api_port sink_log tries=0
  ports="$(free_ports)"
  smtp_port="${ports% *}"
  api_port="${ports#* }"
  sink_log="$(mktemp -t rsolv-smtp-sink.XXXXXX.log)"
  log "Starting the SMTP sink (MailDev): SMTP 127.0.0.1:$smtp_port, API http://127.0.0.1:$api_port (log: $sink_log)"
  "$RSOLV_ROOT/tools/smtp-sink/node_modules/.bin/maildev" \
    --ip 127.0.0.1 --smtp "$smtp_port" --web "$api_port" >"$sink_log" 2>&1 &
  SMTP_SINK_PID=$!
  until node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
    "http://127.0.0.1:$api_port/healthz" 2>/dev/null; do
    if ! kill -0 "$SMTP_SINK_PID" 2>/dev/null; then
      cat "$sink_log" >&2
      SMTP_SINK_PID=""
      die "the SMTP sink (MailDev) exited at start-up"
    fi
    tries=$((tries + 1))
    [ "$tries" -le 60 ] || die "the SMTP sink did not answer on http://127.0.0.1:$api_port within 30 s"
    sleep 0.5
  done
  TEST_SMTP_HOST="127.0.0.1"
  TEST_SMTP_PORT="$smtp_port"
  TEST_SMTP_API_URL="http://127.0.0.1:$api_port"
  export TEST_SMTP_HOST TEST_SMTP_PORT TEST_SMTP_API_URL
}

# stop_smtp_sink — stops the sink ensure_smtp_sink started (if any).
stop_smtp_sink() {
  if [ -n "$SMTP_SINK_PID" ]; then
    kill "$SMTP_SINK_PID" 2>/dev/null || true
    wait "$SMTP_SINK_PID" 2>/dev/null || true
    SMTP_SINK_PID=""
  fi
}
