# shellcheck shell=bash
# compose-lib.sh: what compose-backup and compose-restore share: finding the stack's running
# `db` container by the labels podman-compose and docker compose put on it.

die() { printf >&2 '%s: %s\n' "$(basename "$0")" "$*"; exit 1; }

root="$(cd "$here/../.." && pwd)"
if [ -z "${ENGINE:-}" ]; then
	if command -v podman > /dev/null; then ENGINE=podman; elif command -v docker > /dev/null; then ENGINE=docker; else
		die "neither podman nor docker is installed"
	fi
fi
# the default project name of both tools: the compose file's directory, lower case, only [a-z0-9_-]
project="${COMPOSE_PROJECT_NAME:-$(basename "$root" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9_-')}"

# find_db: sets ctr to the running db container of $project
find_db() {
	local label ids
	for label in io.podman.compose.project com.docker.compose.project; do
		ids="$("$ENGINE" ps -q --filter "label=$label=$project" --filter label=com.docker.compose.service=db)"
		[ -z "$ids" ] || break
	done
	[ -n "$ids" ] || die "no running db container in compose project '$project' (up -d first; -p PROJECT?)"
	[ "$(wc -l <<< "$ids")" = 1 ] || die "more than one db container in project '$project'"
	ctr="$ids"
}
