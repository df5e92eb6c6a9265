#!/usr/bin/env bash
# The main command: install dependencies, build, install the extension into
# the system's PostgreSQL 15, start a scratch server as postgres in a
# temporary directory with shared_preload_libraries = 'consent', and take
# the five-minute tour (scripts/tour.sql).  The server is stopped and its
# directory removed at the end; KEEP=1 leaves it running.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# Packages first: env.sh asks pg_config, which they bring.
./scripts/deps.sh
. scripts/env.sh
echo "== build"
make -s PG_CONFIG="$PG_CONFIG"
echo "== install into $("$PG_CONFIG" --pkglibdir) and $("$PG_CONFIG" --sharedir)/extension"
if [ "$(id -u)" -eq 0 ] || [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
	make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
else
	sudo make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
fi

BIN=$PGBIN
DIR=$(mktemp -d /tmp/consent-demo.XXXXXX)
chmod 755 "$DIR"
[ "$(id -u)" -eq 0 ] && chown postgres "$DIR"
if [ "${KEEP:-0}" != 1 ]; then
	trap 'stop_scratch_server "$DIR"; rm -rf "$DIR"' EXIT
fi
# postgres may not enter a clone under /root: work from the scratch dir
cd "$DIR"
echo "== scratch server in $DIR (socket only, port ${SCRATCH_PORT:=5496})"
export SCRATCH_PORT
start_scratch_server "$DIR"
as_pg "$BIN/createdb" consent_demo
echo "== tour"
# on stdin: postgres may not be able to read a clone under /root
as_pg "$BIN/psql" -X -v ON_ERROR_STOP=1 -d consent_demo -f - <"$ROOT/scripts/tour.sql"
if [ "${KEEP:-0}" = 1 ]; then
	echo "server left running: psql -h $DIR -p $SCRATCH_PORT -U postgres consent_demo"
fi
