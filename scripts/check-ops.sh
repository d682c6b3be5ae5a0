#!/usr/bin/env bash
# Checks the monitoring code in ops/ (issue 11 § 3); scripts/test.sh runs it.
#
#   ./scripts/check-ops.sh
#
# 1. promtool check rules ops/prometheus/alerts.yml   (the rules parse)
# 2. promtool test rules ops/prometheus/alerts_test.yml (each alert fires and
#    stays silent where it should)
# 3. every PromQL expression of the Grafana dashboard parses (checked as
#    recording rules by promtool)
# That the rules and the dashboard name only metrics the code registers is a
# unit test in src/server/metrics.rs (cargo test).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
cd "$RSOLV_ROOT"

ensure_promtool
"$PROMTOOL" check rules ops/prometheus/alerts.yml
"$PROMTOOL" test rules ops/prometheus/alerts_test.yml

rules="$(mktemp --suffix=.yml)"
trap 'rm -f "$rules"' EXIT
python3 - ops/grafana/rsolv-platform.json >"$rules" <<'PY'
import json, sys
panels = json.load(open(sys.argv[1]))["panels"]
print("groups:\n  - name: dashboard\n    rules:")
n = 0
for panel in panels:
    for target in panel.get("targets", []):
        n += 1
        print(f"      - record: dashboard:panel_{panel['id']}:{target['refId']}")
        print(f"        expr: {json.dumps(target['expr'])}")
if n == 0:
    sys.exit("the dashboard has no query")
PY
log "The dashboard's queries"
"$PROMTOOL" check rules "$rules"
