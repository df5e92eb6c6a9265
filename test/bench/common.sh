# Sourced by test/bench/*: builds the extension into a private copy of
# PostgreSQL 15 and starts a benchmark server from it.  Not run in CI.
#
# bench_start DIR [extra postgresql.conf lines...]   sets BIN, PGHOST, PGPORT
# bench_stop DIR
set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$BENCH_ROOT"
. scripts/env.sh

bench_start() {
	local dir=$1; shift
	make -s PG_CONFIG="$PG_CONFIG" >/dev/null
	mkdir -p "$dir"
	chmod 755 "$dir"
	make_private_install "$dir/inst"
	BIN=$dir/inst$PGBIN
	export PATH="$BIN:$PATH"
	if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$dir"; fi
	as_pg "$BIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
	# Durable defaults (fsync, synchronous_commit): the figures are meant
	# to be those of a real server.
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "port = ${BENCH_PORT:-5497}"
		echo "shared_preload_libraries = 'consent'"
		echo "max_connections = 50"
		echo "shared_buffers = 256MB"
		echo "log_min_messages = warning"
		for line in "$@"; do echo "$line"; done
	} >>"$dir/data/postgresql.conf"
	as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
	export PGHOST=$dir PGPORT=${BENCH_PORT:-5497} PGUSER=postgres
}

bench_stop() {
	local dir=$1
	as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

bench_psql() {
	as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}

# pgbench TPS ("tps = N (without initial connection time)")
bench_tps() {
	sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p' "$1"
}
