#!/usr/bin/env bash
# Backup and restore drill (docs/runbooks/backup-restore.md), end to end on
# the local server: a database is migrated and given data by the binary,
# backed up with pg_dump (custom format), restored with pg_restore into a
# fresh database, and compared table by table; the restored copy must need
# no migration. Both databases are dropped afterwards.
#
#   scripts/backup-restore-drill.sh            # uses TEST_DATABASE_URL's server
#   RSOLV_BIN=path/to/rsolv-platform scripts/backup-restore-drill.sh
#
# Exit status 0 when the restored copy matches.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

ADMIN_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
BIN="${RSOLV_BIN:-$SERVER_BIN}"
[ -x "$BIN" ] || die "no server binary at $BIN (cargo build --features ssr, or set RSOLV_BIN)"
BASE="${ADMIN_URL%/*}"
SUFFIX="$$_$(date +%s)"
SOURCE="rsolv_drill_src_$SUFFIX"
RESTORED="rsolv_drill_restored_$SUFFIX"
DUMP="$(mktemp -d)/rsolv.dump"

cleanup() {
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $SOURCE WITH (FORCE)" \
    -c "DROP DATABASE IF EXISTS $RESTORED WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$(dirname "$DUMP")"
}
trap cleanup EXIT

log "creating $SOURCE, migrating it and adding data"
psql -q "$ADMIN_URL" -c "CREATE DATABASE $SOURCE"
DATABASE_URL="$BASE/$SOURCE" "$BIN" migrate
printf 'drill-password-123456\n' |
  DATABASE_URL="$BASE/$SOURCE" "$BIN" create-admin --email drill-admin@example.com >/dev/null
DATABASE_URL="$BASE/$SOURCE" "$BIN" create-admin --email drill-invite@example.com --invite >/dev/null

log "backing up with pg_dump --format=custom"
pg_dump --format=custom --no-owner --file="$DUMP" "$BASE/$SOURCE"
log "dump: $(du -h "$DUMP" | cut -f1)"

log "restoring into $RESTORED with pg_restore"
psql -q "$ADMIN_URL" -c "CREATE DATABASE $RESTORED"
pg_restore --no-owner --exit-on-error --dbname="$BASE/$RESTORED" "$DUMP"

# Row count of every table, one "table count" line each.
counts() {
  psql -At "$1" -c "
    SELECT format('SELECT %L || '' '' || count(*) FROM %I.%I;', c.relname, n.nspname, c.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY c.relname" |
    psql -At -v ON_ERROR_STOP=1 "$1"
}
before="$(counts "$BASE/$SOURCE")"
after="$(counts "$BASE/$RESTORED")"
if [ "$before" != "$after" ]; then
  diff <(echo "$before") <(echo "$after") || true
  die "the restored database differs from the source"
fi
rows=$(awk '{s += $2} END {print s}' <<<"$before")
tables=$(wc -l <<<"$before")
[ "$tables" -gt 10 ] && [ "$rows" -gt 0 ] || die "too little to compare: $tables tables, $rows rows"
log "restored: $tables tables, $rows rows, identical counts"

pending="$(DATABASE_URL="$BASE/$RESTORED" "$BIN" migrate)"
case "$pending" in
  "applied 0 migration(s)"*) log "restored copy is fully migrated ($pending)" ;;
  *) die "restored copy needed migrations: $pending" ;;
esac
log "backup and restore drill passed"
