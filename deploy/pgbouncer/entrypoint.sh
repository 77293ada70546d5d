#!/bin/sh
# Start PgBouncer for podman-compose.pgbouncer.yml: write its auth file (one line,
# "user" "password") from the db_password secret into the tmpfs /tmp, then exec pgbouncer, so
# that it is PID 1 and receives the stop signal itself. Needs only sh, sed and pgbouncer.
set -eu
umask 077
mkdir -p /tmp/pgbouncer
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
password="$(cat /run/secrets/db_password)"
printf '%s %s\n' "$(quote "${DB_USER:?DB_USER is not set}")" "$(quote "$password")" > /tmp/pgbouncer/userlist.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
