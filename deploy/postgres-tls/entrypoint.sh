#!/bin/sh
# PostgreSQL with TLS, for podman-compose.tls.yml: mounted at /etc/postgresql-tls/ and run as
# the db service's entrypoint, as the image's postgres user (uid 70 in postgres:16-alpine, 999
# in localhost/postgres:15-offline: this script needs neither).
#
# PostgreSQL starts only with a key that is 0600 and its own (or root's and 0640): a
# bind-mounted secret keeps the host's owner and mode, which fit no image's postgres uid. So
# the key is copied, by the postgres user, to a 0600 file outside the data volume; the copy is
# renewed at every start, so a new key on the host needs only a restart.
set -eu
# the image's CMD (postgres), when the engine passes it on after a new entrypoint
[ "${1:-}" != postgres ] || shift
secrets=/run/secrets
key=/var/lib/postgresql/tls-server.key
if ! [ -r "$secrets/db_tls_key" ] || ! [ -r "$secrets/db_tls_cert" ]; then
	echo >&2 "postgres-tls: $secrets/db_tls_cert and $secrets/db_tls_key must be readable by uid $(id -u) (mode 0644 in a 0700 directory: scripts/make-tls-certs)"
	exit 1
fi
(umask 077 && cat "$secrets/db_tls_key" > "$key.new" && mv -f "$key.new" "$key")
# Every connection over TCP must use TLS (pg_hba.conf here); TLS 1.2 at least, as the API asks.
exec docker-entrypoint.sh postgres \
	-c ssl=on \
	-c ssl_cert_file="$secrets/db_tls_cert" \
	-c ssl_key_file="$key" \
	-c ssl_min_protocol_version=TLSv1.2 \
	-c hba_file=/etc/postgresql-tls/pg_hba.conf \
	"$@"
