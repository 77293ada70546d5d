#!/usr/bin/env bash
# Runs inside the systemd container of tests/systemd/run (as root, PID 1 is systemd), with the
# binary and systemd/ copied to /root/user-api-test. Installs user-api the way docs/systemd.md
# says, against a throw-away PostgreSQL on 127.0.0.1:5432, and checks what systemd does with
# the units. Prints one line per check; any failure exits non-zero.
set -Eeuo pipefail
src=/root/user-api-test
say() { printf '    %s\n' "$*"; }
fail() { printf >&2 'FAIL (under systemd): %s\n' "$*"; exit 1; }
show() { systemctl show -P "$2" "$1"; }
http() { curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$@" || echo 000; }

# --- a throw-away PostgreSQL (the container's file system is an overlay that goes with it) ---
pg=/var/lib/user-api-test-pg
password="pw-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
# the test harness's launcher (examples/pg.rs, copied in by the runner); runs it as 'postgres'
"$src/pg" start "$pg" --port 5432 --password "$password" > /dev/null
PGPASSWORD="$password" psql -q -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 \
	-c "CREATE ROLE user_api LOGIN PASSWORD '$password'" -c "CREATE DATABASE user_api OWNER user_api"

# --- install, as in docs/systemd.md -------------------------------------------------------------
install -m 0755 "$src/user-api" /usr/local/bin/user-api
install -d -m 0755 /etc/user-api
install -m 0644 "$src/user-api.env" /etc/user-api/user-api.env
install -m 0600 /dev/null /etc/user-api/db_password
printf '%s' "$password" > /etc/user-api/db_password
install -m 0644 "$src/user-api.service" "$src/user-api.socket" /etc/systemd/system/
systemctl daemon-reload

# --- socket activation ---------------------------------------------------------------------------
systemctl enable --now user-api.socket 2> /dev/null
[ "$(show user-api.service ActiveState)" = inactive ] || fail "the service runs before any connection"
code="$(http http://127.0.0.1:5000/health)"
[ "$code" = 200 ] || fail "first request through user-api.socket: $code"
[ "$(show user-api.service ActiveState)/$(show user-api.service SubState)" = active/running ] ||
	fail "after activation the service is $(show user-api.service ActiveState)/$(show user-api.service SubState)"
pid="$(show user-api.service MainPID)"
say "socket activation: the first request started user-api.service (pid $pid) and got 200"

# --- the service's identity and sandbox, as the kernel sees them ----------------------------------
uid="$(awk '$1 == "Uid:" {print $2}' "/proc/$pid/status")"
[ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] || fail "uid $uid is not a DynamicUser uid"
[ "$(awk '$1 == "CapEff:" {print $2}' "/proc/$pid/status")" = 0000000000000000 ] || fail "the service has capabilities"
[ "$(awk '$1 == "CapBnd:" {print $2}' "/proc/$pid/status")" = 0000000000000000 ] || fail "the bounding set is not empty"
[ "$(awk '$1 == "NoNewPrivs:" {print $2}' "/proc/$pid/status")" = 1 ] || fail "NoNewPrivs is off"
[ "$(awk '$1 == "Seccomp:" {print $2}' "/proc/$pid/status")" = 2 ] || fail "no seccomp filter"
grep -q ' / / ro,' "/proc/$pid/mountinfo" || fail "/ is not read-only for the service (ProtectSystem=strict)"
[ ! -r /proc/$pid/environ ] || ! grep -qa "$password" "/proc/$pid/environ" || fail "the password is in the environment"
say "DynamicUser uid $uid ($(show user-api.service User)), no capabilities, NoNewPrivs, seccomp, read-only /, password not in the environment"

# --- the workers' scheduling policy (src/http/server/sched.rs) gets through the filter ------------
workers=0
for task in /proc/$pid/task/*; do
	case "$(cat "$task/comm")" in http-worker-*) ;; *) continue ;; esac
	# field 41 of stat; the fields after the command name start at field 3
	policy="$(sed 's/.*) //' "$task/stat" | awk '{print $39}')"
	[ "$policy" = 3 ] || fail "$(cat "$task/comm") runs under policy $policy, not SCHED_BATCH (3)"
	workers=$((workers + 1))
done
[ "$workers" -gt 0 ] || fail "no http-worker thread found"
say "$workers worker threads under SCHED_BATCH"

# --- it works through all that: the README's examples ----------------------------------------------
body="$(curl -s --max-time 10 -X POST http://127.0.0.1:5000/user -H 'Content-Type: application/json' \
	-d '{"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}')"
id="$(sed -n 's/.*"id": *\([0-9]*\).*/\1/p' <<< "$body")"
[ -n "$id" ] || fail "create: $body"
[ "$(http "http://127.0.0.1:5000/user/$id")" = 200 ] || fail "get user $id"
[ "$(http 'http://127.0.0.1:5000/users?limit=10&offset=0')" = 200 ] || fail "list"
rss="$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status")"
say "create/get/list: 201/200/200; VmRSS $rss kB"
online="$(systemd-analyze security user-api.service 2> /dev/null | sed -n 's/.*Overall exposure level for user-api.service: \([0-9.]*\).*/\1/p')"
say "systemd-analyze security user-api.service (loaded unit): $online"

# --- graceful stop ---------------------------------------------------------------------------------
start=$(date +%s.%N)
systemctl stop user-api.service
took="$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')"
[ "$(show user-api.service Result)" = success ] || fail "stop: Result=$(show user-api.service Result)"
[ "$(show user-api.service ExecMainStatus)" = 0 ] || fail "stop: exit status $(show user-api.service ExecMainStatus)"
say "systemctl stop: exit 0, Result=success, in $took s"

# --- Type=notify without the socket: `systemctl start` returns once it serves ----------------------
systemctl disable --now user-api.socket 2> /dev/null
start=$(date +%s.%N)
systemctl start user-api.service
took="$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')"
code="$(http http://127.0.0.1:5000/health)"
[ "$code" = 200 ] || fail "right after systemctl start returned, /health answered $code"
[ "$(show user-api.service Type)" = notify ] || fail "Type is $(show user-api.service Type)"
say "Type=notify: systemctl start returned after $took s (READY=1), /health 200 at once, bound BIND itself"

# --- Restart=on-failure ----------------------------------------------------------------------------
old="$(show user-api.service MainPID)"
systemctl kill -s SIGKILL user-api.service
for _ in $(seq 1 40); do
	new="$(show user-api.service MainPID)"
	[ "$new" != 0 ] && [ "$new" != "$old" ] && [ "$(show user-api.service ActiveState)" = active ] && break
	sleep 0.25
done
[ "$(show user-api.service NRestarts)" -ge 1 ] && [ "$new" != "$old" ] || fail "no restart after SIGKILL"
[ "$(http http://127.0.0.1:5000/health)" = 200 ] || fail "not serving after the restart"
say "Restart=on-failure: SIGKILLed pid $old, restarted as $new, serving"

# --- and a clean stop again ----------------------------------------------------------------------
systemctl stop user-api.service
[ "$(show user-api.service Result)" = success ] || fail "second stop: Result=$(show user-api.service Result)"

# --- HTTPS: the drop-in systemd/user-api.service.d/https.conf.example, as docs/systemd.md says ------
"$src/make-tls-certs" "$src/tls" > /dev/null
install -d -m 0700 /etc/user-api/tls
install -m 0644 "$src/tls/api.pem" /etc/user-api/tls/fullchain.pem
install -m 0600 "$src/tls/api.key" /etc/user-api/tls/key.pem
install -D -m 0644 "$src/user-api.service.d/https.conf.example" /etc/systemd/system/user-api.service.d/https.conf
systemctl daemon-reload
systemctl start user-api.service
code="$(http --cacert "$src/tls/ca.pem" https://127.0.0.1:5000/health)"
[ "$code" = 200 ] || fail "over HTTPS with the drop-in, /health answered $code"
body="$(curl -s --max-time 10 --cacert "$src/tls/ca.pem" "https://127.0.0.1:5000/user/$id")"
[[ "$body" == *'"ada@example.com"'* ]] || fail "read back over HTTPS: $body"
if curl -s -o /dev/null --max-time 10 https://127.0.0.1:5000/health; then
	fail "curl trusted the service without --cacert: is it serving the credential's certificate?"
fi
[ "$(http http://127.0.0.1:5000/health)" = 400 ] || fail "plain http:// was not refused with 400 under the drop-in"
pid="$(show user-api.service MainPID)"
# the key reached the service as a credential: a copy in its credentials directory, which the
# service's DynamicUser owns and nobody else may read; the source stays root's
cred="$(tr '\0' '\n' < "/proc/$pid/environ" | sed -n 's/^CREDENTIALS_DIRECTORY=//p')"
{ [ -n "$cred" ] && [ -f "$cred/tls_key" ] && [ -f "$cred/tls_cert" ]; } || fail "no tls_key/tls_cert in the service's credentials ($cred)"
! tr '\0' '\n' < "/proc/$pid/environ" | grep -q '^TLS_KEY_FILE=' || fail "TLS_KEY_FILE is set: the test would not exercise the credential"
[ "$(stat -c %a /etc/user-api/tls/key.pem)" = 600 ] || fail "the key's source is not 0600"
# and `user-api healthcheck` given that credentials directory asks over HTTPS, trusting its certificate
hc="$(CREDENTIALS_DIRECTORY="$cred" /usr/local/bin/user-api healthcheck 2>&1)" || fail "user-api healthcheck with the credentials: $hc"
say "HTTPS drop-in (LoadCredential tls_cert, tls_key): curl --cacert 200 and read back; untrusted without the CA; http:// 400; $hc"
systemctl stop user-api.service
[ "$(show user-api.service Result)" = success ] || fail "stop over HTTPS: Result=$(show user-api.service Result)"
"$src/pg" stop "$pg"
