# shellcheck shell=bash
# scripts/lib/pg.sh: start and stop a throwaway PostgreSQL cluster, for scripts that
# need a real database (the API fuzz run, benchmarks, the systemd test).
#
#   source scripts/lib/pg.sh
#   pg_start "$dir"        # initdb + start on a free port; sets PG_PORT, PG_URL (superuser)
#   pg_createdb NAME       # creates a database; prints its URL
#   pg_stop                # fast shutdown; the caller removes "$dir"
#
# PostgreSQL refuses to run as root: as root the cluster runs as the 'postgres' account.

PG_SUPERUSER_PASSWORD="${PG_SUPERUSER_PASSWORD:-throwaway-$$-$RANDOM}"

pg_bindir() {
	if command -v pg_ctl > /dev/null && command -v initdb > /dev/null; then
		dirname "$(command -v pg_ctl)"
	elif command -v pg_config > /dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
		pg_config --bindir
	else
		ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -n 1
	fi
}

pg_as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_start() {
	PG_DIR="$1"
	PG_BIN="$(pg_bindir)"
	[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found: apt-get install postgresql" >&2; return 1; }
	mkdir -p "$PG_DIR"
	# As root the server runs as 'postgres', which must be able to reach the directory:
	# mktemp makes private (0700) parents.
	[ "$(id -u)" = 0 ] && chmod o+x "$(dirname "$PG_DIR")"
	printf '%s\n' "$PG_SUPERUSER_PASSWORD" > "$PG_DIR/pwfile"
	[ "$(id -u)" = 0 ] && chown -R postgres: "$PG_DIR"
	pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=scram-sha-256 \
		--pwfile="$PG_DIR/pwfile" > "$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
	local try
	for try in 1 2 3; do
		PG_PORT="$(pg_free_port)"
		if pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 30 \
			-o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 ${PG_EXTRA_OPTS:-}" start > /dev/null; then
			PG_URL="postgres://postgres:$PG_SUPERUSER_PASSWORD@127.0.0.1:$PG_PORT/postgres"
			export PG_PORT PG_URL PG_DIR PG_BIN
			return 0
		fi
	done
	cat "$PG_DIR/postgres.log" >&2
	return 1
}

pg_psql() {
	local psql
	psql="$(command -v psql || echo "$PG_BIN/psql")"
	PGPASSWORD="$PG_SUPERUSER_PASSWORD" "$psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

pg_createdb() {
	pg_psql -d postgres -c "CREATE DATABASE \"$1\"" > /dev/null || return 1
	echo "postgres://postgres:$PG_SUPERUSER_PASSWORD@127.0.0.1:$PG_PORT/$1"
}

pg_stop() {
	[ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ] || return 0
	pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop > /dev/null 2>&1 || true
}
