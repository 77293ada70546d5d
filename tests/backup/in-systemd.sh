#!/usr/bin/env bash
# Runs inside the systemd container of tests/backup/run (as root, PID 1 is systemd), with the
# API binary, systemd/ and deploy/backup/user-api-backup copied to /root/user-api-test.
# Installs user-api and its backup units the way docs/systemd.md and docs/backups.md say,
# against a throw-away PostgreSQL on 127.0.0.1:5432, lets the timer run the backup, and
# restores after the database is dropped. Prints one line per check; any failure exits non-zero.
set -Eeuo pipefail
src=/root/user-api-test
say() { printf '    %s\n' "$*"; }
fail() { printf >&2 'FAIL (under systemd): %s\n' "$*"; exit 1; }
show() { systemctl show -P "$2" "$1"; }
api=http://127.0.0.1:5000
wait_until() { # SECONDS COMMAND...
	local limit="$1" start=$SECONDS
	shift
	until "$@" > /dev/null 2>&1; do
		[ $((SECONDS - start)) -lt "$limit" ] || return 1
		sleep 0.5
	done
}

# --- a throw-away PostgreSQL (the container's file system is an overlay that goes with it) ---
pg=/var/lib/user-api-test-pg
password="pw-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
# the test harness's launcher (examples/pg.rs, copied in by the runner); runs it as 'postgres'
"$src/pg" start "$pg" --port 5432 --password "$password" > /dev/null
su_psql() { PGPASSWORD="$password" psql -X -q -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
su_psql -c "CREATE ROLE user_api LOGIN CREATEDB PASSWORD '$password'" -c "CREATE DATABASE user_api OWNER user_api"

# --- user-api, as in docs/systemd.md --------------------------------------------------------------
install -m 0755 "$src/user-api" /usr/local/bin/user-api
install -d -m 0755 /etc/user-api
install -m 0644 "$src/user-api.env" /etc/user-api/user-api.env
install -m 0600 /dev/null /etc/user-api/db_password
printf '%s' "$password" > /etc/user-api/db_password
install -m 0644 "$src/user-api.service" /etc/systemd/system/
systemctl daemon-reload
systemctl start user-api.service
for i in $(seq 1 30); do
	curl -sf -o /dev/null -X POST "$api/users" -H 'Content-Type: application/json' \
		-d "{\"first_name\": \"Timer$i\", \"last_name\": \"Test\", \"email\": \"t$i@example.com\"}" || fail "create user $i"
done
curl -sf -o /dev/null -X DELETE "$api/user/3" || fail "delete"
curl -sf "$api/users?limit=100" > /root/before.json || fail "list"
say "user-api.service serving 29 users"

# --- the backup units, as in docs/backups.md --------------------------------------------------------
install -m 0755 "$src/user-api-backup" /usr/local/bin/user-api-backup
install -m 0644 "$src/user-api-backup.service" "$src/user-api-backup.timer" /etc/systemd/system/
printf 'BACKUP_KEEP=2\n' > /etc/user-api/backup.env
systemctl daemon-reload
systemctl enable --now user-api-backup.timer 2> /dev/null
[ "$(show user-api-backup.timer ActiveState)" = active ] || fail "the timer is not active"
next="$(systemctl list-timers --all --no-legend user-api-backup.timer | awk '{print $1, $2, $3}')"
say "user-api-backup.timer enabled and active; next run: $next"

# the timer starts the service: for this test, also 1 s after the timer starts (a drop-in;
# without the night's random delay and the 1 min accuracy)
mkdir -p /etc/systemd/system/user-api-backup.timer.d
printf '[Timer]\nOnActiveSec=1s\nAccuracySec=1s\nRandomizedDelaySec=0\n' > /etc/systemd/system/user-api-backup.timer.d/soon.conf
systemctl daemon-reload
systemctl restart user-api-backup.timer
dir=/var/lib/user-api-backup
wait_until 60 test -e "$dir/latest.dump" || fail "the timer did not run the service within 60 s"
backup_done() { [ "$(show user-api-backup.service ActiveState)" = inactive ]; }
wait_until 60 backup_done || fail "the backup did not finish"
[ "$(show user-api-backup.service Result)" = success ] || fail "the timer's run: Result=$(show user-api-backup.service Result)"
rm -r /etc/systemd/system/user-api-backup.timer.d
systemctl daemon-reload
[ "$(ls "$dir" | grep -c '\.dump$')" = 2 ] || fail "after the timer's run: $(ls "$dir")" # one dump + latest.dump
say "the timer ran user-api-backup.service: $(journalctl -u user-api-backup.service -o cat --no-pager | grep 'wrote' | tail -n 1)"

# two more runs by hand: BACKUP_KEEP=2 keeps two; as a dynamic user, in a 0700 state directory
systemctl start user-api-backup.service
systemctl start user-api-backup.service
[ "$(show user-api-backup.service Result)" = success ] || fail "systemctl start user-api-backup.service failed"
dumps="$(ls "$dir" | grep -E '^user_api-.*\.dump$')"
[ "$(wc -l <<< "$dumps")" = 2 ] || fail "BACKUP_KEEP=2 kept: $dumps"
real="$(readlink -f "$dir")"
[ "$real" = /var/lib/private/user-api-backup ] || fail "the state directory is $real, not under /var/lib/private"
owner="$(stat -c %u "$real/$(head -n 1 <<< "$dumps")")"
[ "$owner" -ge 61184 ] && [ "$owner" -le 65519 ] || fail "the dumps belong to uid $owner, not a DynamicUser"
[ "$(stat -c %a "$real")" = 700 ] && [ "$(stat -c %a "$real/$(head -n 1 <<< "$dumps")")" = 600 ] || fail "dumps readable by others"
say "3 runs, BACKUP_KEEP=2: $(tr '\n' ' ' <<< "$dumps")(uid $owner, 0600, in $real 0700)"

# --- the database is lost; one command restores it -----------------------------------------------------
su_psql -c 'DROP DATABASE user_api WITH (FORCE)'
[ "$(curl -s -o /dev/null -w '%{http_code}' "$api/users")" = 503 ] || fail "users still served after DROP DATABASE"
user-api-backup restore | sed 's/^/    | /'
wait_until 30 curl -fsS "$api/health/ready" || fail "the API did not recover"
curl -sf "$api/users?limit=100" > /root/after.json || fail "list after the restore"
cmp -s /root/before.json /root/after.json || fail "the users after the restore differ"
new_id="$(curl -sf -X POST "$api/users" -H 'Content-Type: application/json' -d '{"first_name": "New", "last_name": "User"}' |
	sed -n 's/.*"id": *\([0-9]*\).*/\1/p')"
[ "$new_id" = 31 ] || fail "a new user got id $new_id, expected 31 (the sequence restored)"
say "DROP DATABASE, then \`user-api-backup restore\`: the same 29 users, a new user gets id 31"
systemctl stop user-api.service
