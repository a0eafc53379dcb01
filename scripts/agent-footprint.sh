#!/usr/bin/env bash
# Measures the agent's footprint at default settings (60 s heartbeats, 5 s samples) against a
# local collector on embedded SQLite: stripped binary size, resident memory, CPU seconds per
# hour (extrapolated from a run of DURATION seconds, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-300}
cargo build --release -p greenops-collector -p greenops-agent >/dev/null 2>&1
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/release/greenops serve --listen 127.0.0.1:$port --database-url "sqlite://$work/greenops.db" >/dev/null 2>&1 &
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
token=$(./target/release/greenops enrollment-token create --database-url "sqlite://$work/greenops.db" | tail -n 1)
GREENOPS_AGENT_CONFIG=/dev/null ./target/release/greenops-agent run --server "http://127.0.0.1:$port" \
    --enrollment-token "$token" --state-dir "$work/agent" 2>/dev/null &
agent=$!
sleep "$DURATION"
ticks=$(getconf CLK_TCK)
read -r utime stime < <(awk '{print $14, $15}' /proc/$agent/stat)
rss=$(awk '/VmRSS/ {print $2}' /proc/$agent/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$agent/status)
cpu=$(echo "scale=3; ($utime + $stime) / $ticks" | bc)
per_hour=$(echo "scale=2; $cpu * 3600 / $DURATION" | bc)
cp target/release/greenops-agent "$work/stripped" && strip "$work/stripped"
size=$(stat -c %s "$work/stripped")
echo "duration_s=$DURATION cpu_s=$cpu cpu_s_per_hour=$per_hour rss_kib=$rss peak_rss_kib=$hwm stripped_bytes=$size ($(echo "scale=2; $size/1048576" | bc) MiB)"
