#!/usr/bin/env bash
# Starts (creating on first use) a persistent local PostgreSQL cluster for development under
# ./data/postgres and prints its URL. Uses the installed server binaries (initdb, pg_ctl);
# as root the server runs as `nobody`, because PostgreSQL refuses to run as root.
# Usage: scripts/dev-postgres.sh [start|stop|url]
set -euo pipefail

cd "$(dirname "$0")/.."
PORT="${GREENOPS_DEV_PG_PORT:-5433}"
DIR="$PWD/data/postgres"
DB=greenops

bin_dir() {
    if command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return
    fi
    local latest
    latest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$latest" ] || { echo "error: PostgreSQL server binaries (initdb, pg_ctl) not found" >&2; exit 1; }
    echo "$latest"
}

BIN=$(bin_dir)
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
    else
        "$@"
    fi
}

url() { echo "postgres://postgres@127.0.0.1:$PORT/$DB"; }

start() {
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown nobody:nogroup "$DIR"
    if [ ! -f "$DIR/PG_VERSION" ]; then
        echo "Creating a development cluster in $DIR" >&2
        as_owner "$BIN/initdb" -D "$DIR" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if ! as_owner "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
        as_owner "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w \
            -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1" start >/dev/null
        echo "PostgreSQL started on 127.0.0.1:$PORT (log: $DIR/server.log)" >&2
    fi
    if ! "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB'" postgres 2>/dev/null | grep -q 1; then
        "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB"
    fi
    url
}

stop() {
    if [ -f "$DIR/PG_VERSION" ]; then
        as_owner "$BIN/pg_ctl" -D "$DIR" -m fast stop >/dev/null 2>&1 || true
        echo "PostgreSQL stopped" >&2
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *) echo "usage: $0 [start|stop|url]" >&2; exit 2 ;;
esac
