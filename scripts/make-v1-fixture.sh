#!/usr/bin/env bash
# Builds collector/tests/fixtures/v1/: an installation made by the last collector with the
# version-1 schema (git revision fcca591), used by tests/api/upgrade.rs to check that an
# upgrade carries every figure forward.
#
#   scripts/make-v1-fixture.sh PATH/TO/OLD/greenops
#
# Build the old binary with: git worktree add /tmp/v1 fcca591 && (cd /tmp/v1 && cargo build --release)
# Needs curl, python3 and PostgreSQL's initdb/pg_ctl/pg_dump on PATH (or under
# /usr/lib/postgresql/*/bin). As root, PostgreSQL runs as `nobody`.
set -euo pipefail
OLD=${1:?usage: $0 PATH/TO/OLD/greenops}
OUT=$(cd "$(dirname "$0")/.." && pwd)/collector/tests/fixtures/v1
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
export PATH="$PATH:$PGBIN"
WORK=$(mktemp -d)
chmod 755 "$WORK"
PORT=19861
PGPORT=19862
pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$PGBIN/$1" "${@:2}"; else "$PGBIN/$1" "${@:2}"; fi; }
trap 'kill "$SERVER" 2>/dev/null || true; pg pg_ctl -D "$WORK/pg" stop -m fast >/dev/null 2>&1 || true' EXIT

export GREENOPS_ADMIN_PASSWORD=fixture-admin-password
export GREENOPS_DATA_DIR="$WORK/data"
DB="sqlite://$WORK/data/greenops.db"
"$OLD" serve --listen "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
SERVER=$!
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.2; done
BASE="http://127.0.0.1:$PORT"
SESSION=$(curl -sf "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$GREENOPS_ADMIN_PASSWORD\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
api() { curl -sf -H "authorization: Bearer $SESSION" -H 'content-type: application/json' "$@"; }

# A second site in another currency and a second power profile.
api "$BASE/api/v1/sites" -d '{"name":"tokyo","currency":"JPY","price_per_kwh":"31","carbon_intensity_g_per_kwh":450,"timezone":"Asia/Tokyo"}' >/dev/null
api "$BASE/api/v1/power-profiles" -d '{"name":"laptop","idle_watts":"8.5","active_watts":25}' >/dev/null
TOKEN=$("$OLD" enrollment-token create --site default --department sales --database-url "$DB" | tail -1)

# An office of eight machines, four hours replayed; halfway, one machine moves to Tokyo on a
# laptop profile (its later time is priced there).
"$OLD" simulate --url "$BASE" --enrollment-token "$TOKEN" --machines 8 --speed 3600 --duration 4s >/dev/null 2>&1 &
SIM=$!
sleep 2
IDS=$(api "$BASE/api/v1/machines?sort=hostname" | python3 -c 'import json,sys; print(" ".join(m["id"] for m in json.load(sys.stdin)["items"]))')
set -- $IDS
api -X PATCH "$BASE/api/v1/machines/$1" -d '{"site":"tokyo","department":"field","power_profile":"laptop"}' >/dev/null
wait "$SIM"

# A machine with heartbeats 45 days old, rolled into hourly rollups by the retention job,
# then retired (version 1 dropped it from every total; version 2 keeps its history).
OLDKEY=fixture-old-machine-0001
AGENT=$(curl -sf "$BASE/api/v1/agents/enroll" -H 'content-type: application/json' \
  -d "{\"enrollment_token\":\"$TOKEN\",\"machine_key\":\"$OLDKEY\",\"hostname\":\"old-pc.example.test\",\"os\":\"linux\",\"os_version\":\"12\",\"agent_version\":\"0.1.0\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["agent_token"])')
python3 - "$BASE" "$AGENT" <<'PY'
import datetime, json, sys, urllib.request
base, token = sys.argv[1], sys.argv[2]
start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(days=45)
beats = [{"seq": i + 1, "sent_at": (start + datetime.timedelta(seconds=60 * i)).isoformat().replace("+00:00", "Z"),
          "idle_seconds": 280 + 30 * i, "session": "locked" if i % 3 == 0 else "active"} for i in range(10)]
req = urllib.request.Request(base + "/api/v1/heartbeats", data=json.dumps({"heartbeats": beats}).encode(),
                             headers={"authorization": "Bearer " + token, "content-type": "application/json"})
urllib.request.urlopen(req).read()
PY
# A machine driven by hand: ten minutes at the default site, then moved to Tokyo (JPY) and
# another ten minutes there.
MOVER=$(curl -sf "$BASE/api/v1/agents/enroll" -H 'content-type: application/json' \
  -d "{\"enrollment_token\":\"$TOKEN\",\"machine_key\":\"fixture-mover-000001\",\"hostname\":\"mover.example.test\",\"os\":\"linux\",\"os_version\":\"12\",\"agent_version\":\"0.1.0\"}")
MOVER_ID=$(echo "$MOVER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["machine_id"])')
MOVER_TOKEN=$(echo "$MOVER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["agent_token"])')
send_beats() {
  python3 - "$BASE" "$MOVER_TOKEN" "$1" "$2" <<'PY'
import datetime, json, sys, urllib.request
base, token, first_seq, minutes_ago = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(minutes=minutes_ago)
beats = [{"seq": first_seq + i, "sent_at": (start + datetime.timedelta(seconds=60 * i)).isoformat().replace("+00:00", "Z"),
          "idle_seconds": 250 + 40 * i, "session": "active"} for i in range(10)]
req = urllib.request.Request(base + "/api/v1/heartbeats", data=json.dumps({"heartbeats": beats}).encode(),
                             headers={"authorization": "Bearer " + token, "content-type": "application/json"})
urllib.request.urlopen(req).read()
PY
}
send_beats 1 30
api -X PATCH "$BASE/api/v1/machines/$MOVER_ID" -d '{"site":"tokyo","department":"field"}' >/dev/null
send_beats 11 20

"$OLD" retention --database-url "$DB" >/dev/null
OLD_ID=$(api "$BASE/api/v1/machines?q=old-pc" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
api -X DELETE "$BASE/api/v1/machines/$OLD_ID" >/dev/null

mkdir -p "$OUT"
curl -sf "$BASE/metrics" | grep -E '^greenops_machine_[a-z_]*_total\{' | sort >"$OUT/metrics.txt"
kill "$SERVER"; wait "$SERVER" || true
cp "$WORK/data/greenops.db" "$OUT/greenops.db"
sqlite3 "$OUT/greenops.db" 'PRAGMA wal_checkpoint(TRUNCATE); VACUUM;' 2>/dev/null || true

# The same installation on PostgreSQL, through the old collector's own migrate-data.
mkdir -p "$WORK/pg" "$WORK/sock"
[ "$(id -u)" = 0 ] && chown nobody:nogroup "$WORK/pg" "$WORK/sock"
pg initdb -D "$WORK/pg" -A trust -U greenops >/dev/null
pg pg_ctl -D "$WORK/pg" -l "$WORK/sock/log" -o "-p $PGPORT -k $WORK/sock -c listen_addresses=127.0.0.1" -w start >/dev/null
pg createdb -h 127.0.0.1 -p "$PGPORT" -U greenops greenops
"$OLD" migrate-data --from "$DB" --to "postgres://greenops@127.0.0.1:$PGPORT/greenops" >/dev/null
pg pg_dump -h 127.0.0.1 -p "$PGPORT" -U greenops --no-owner --no-privileges --inserts greenops >"$OUT/postgres.sql"
echo "fixture written to $OUT"
