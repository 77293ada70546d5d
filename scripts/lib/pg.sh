# shellcheck shell=bash
# scripts/lib/pg.sh: a throwaway PostgreSQL cluster for scripts that need a real database
# (the API fuzz run, the browser and arm suites, the backup test). It starts nothing itself:
# the launcher is the test harness's (tests/common/pg.rs), run through examples/pg.rs.
#
#   source scripts/lib/pg.sh
#   pg_start "$dir"        # creates + starts on a free port; sets PG_PORT, PG_URL (superuser),
#                          # PG_DIR, PG_BIN
#   pg_createdb NAME       # creates a database; prints its URL
#   pg_psql ARGS...        # psql as the superuser
#   pg_stop                # fast shutdown; the caller removes "$dir"
#   pg_bindir              # where the server programs are; fails when there are none
#
# PostgreSQL refuses to run as root: as root the cluster runs as the 'postgres' account.

# The launcher, built once (a development example: not part of the shipped binary).
pg_tool() {
	if [ -z "${PG_TOOL:-}" ]; then
		local root
		root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
		(cd "$root" && cargo build --quiet --example pg) || return 1
		PG_TOOL="${CARGO_TARGET_DIR:-$root/target}/debug/examples/pg"
		export PG_TOOL
	fi
	"$PG_TOOL" "$@"
}

pg_bindir() {
	pg_tool bindir
}

pg_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_start() {
	local env
	env="$(pg_tool start "$1")" || return 1
	eval "$env"
	PG_PORT="$PGPORT" PG_SUPERUSER_PASSWORD="$PGPASSWORD"
	unset PGHOST PGPORT PGUSER PGPASSWORD
	export PG_PORT PG_URL PG_DIR PG_BIN
}

pg_psql() {
	local psql
	psql="$(command -v psql || echo "$PG_BIN/psql")"
	PGPASSWORD="$PG_SUPERUSER_PASSWORD" "$psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

pg_createdb() {
	pg_tool database "$PG_DIR" "$1"
}

pg_stop() {
	[ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ] || return 0
	pg_tool stop "$PG_DIR" > /dev/null 2>&1 || true
}
