# Sourced by the scripts: where PostgreSQL 15 lives, and helpers.
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
PGXS_DIR=$(dirname "$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")")	# .../lib/pgxs

# Run a command as the postgres user (PostgreSQL refuses to run as root).
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- env PATH="$PATH" "$@"
	else
		"$@"
	fi
}

# Build a private installation under $1: a copy of the server plus this
# extension, so that tests never depend on (or change) the system's.
make_private_install() {
	local dest=$1 libdir sharedir
	libdir=$("$PG_CONFIG" --pkglibdir)		# /usr/lib/postgresql/15/lib
	sharedir=$("$PG_CONFIG" --sharedir)		# /usr/share/postgresql/15
	rm -rf "$dest"
	mkdir -p "$dest$(dirname "$(dirname "$libdir")")" "$dest$(dirname "$sharedir")"
	cp -a "$(dirname "$libdir")" "$dest$(dirname "$(dirname "$libdir")")/"
	cp -a "$sharedir" "$dest$(dirname "$sharedir")/"
	# pgTAP lives in the system share dir; the copy above brought it along.
	make -s install DESTDIR="$dest" PG_CONFIG="$PG_CONFIG" >/dev/null
}

# Start a scratch server as postgres in directory $1 (socket there, no TCP).
# Sets PGHOST and PGPORT.
start_scratch_server() {
	local dir=$1
	mkdir -p "$dir"
	chown postgres "$dir" 2>/dev/null || true
	as_pg "$BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
	cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = ${SCRATCH_PORT:-5499}
shared_preload_libraries = 'consent'
fsync = off
CONF
	as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
	export PGHOST=$dir PGPORT=${SCRATCH_PORT:-5499} PGUSER=postgres
}

stop_scratch_server() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
}
