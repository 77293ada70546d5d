#!/usr/bin/env python3
"""Play systemd's part for user-api.service and user-api.socket, where no systemd runs.

For each scenario it starts the binary the way the service manager would, then checks what the
manager relies on:

  socket     user-api.socket: a listening socket passed as fd 3 with LISTEN_FDS=1 and
             LISTEN_PID=<the service's pid> (set by `sh -c 'LISTEN_PID=$$ exec ...'`, since only
             the child knows its pid), an abstract NOTIFY_SOCKET (@...), the password as the
             credential $CREDENTIALS_DIRECTORY/db_password. A request sent before the service is
             up waits in the socket's backlog and is answered once it serves; BIND is not bound.
  bind       the service alone: no LISTEN_FDS, a NOTIFY_SOCKET path in the file system; the
             binary binds BIND itself.
  wrong-pid  LISTEN_FDS=1 but LISTEN_PID of another process: the descriptors are not for this
             process, so it must not use fd 3 and binds BIND instead.

In every scenario: READY=1 arrives from the main pid (SCM_CREDENTIALS: NotifyAccess=main) and
only once /health answers 200; SIGTERM makes it send STOPPING=1 and exit 0 within
TimeoutStopSec. Prints one line of figures per scenario.

usage: manager.py BINARY   (environment: DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD: the
database; the password is handed over as a credential, never in the environment)
"""

import http.client
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

START_TIMEOUT = 60  # TimeoutStartSec of user-api.service
STOP_TIMEOUT = 20  # TimeoutStopSec of user-api.service


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path="/health", timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Notify:
    """The manager's end of NOTIFY_SOCKET: a datagram socket that learns each sender's pid."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.messages = []  # (time, pid, {key: value})

    def wait_for(self, key, value, deadline):
        """Collect datagrams until one sets key=value; return (time, pid, fields)."""
        while True:
            for t, pid, fields in self.messages:
                if fields.get(key) == value:
                    return t, pid, fields
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                return None
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, _uid, _gid = struct.unpack("iII", payload[:12])
            fields = dict(
                line.split("=", 1) for line in data.decode().splitlines() if "=" in line
            )
            self.messages.append((time.monotonic(), pid, fields))


def run(name, binary, base_env, tmp):
    bind_port = free_port()
    env = dict(base_env, BIND=f"127.0.0.1:{bind_port}", WORKERS="2", LOG_LEVEL="info")
    if name == "socket":
        notify_addr = f"\0user-api-test-{os.getpid()}"  # abstract: "@user-api-test-..."
        env["NOTIFY_SOCKET"] = "@" + notify_addr[1:]
    else:
        notify_addr = os.path.join(tmp, f"notify-{name}")
        env["NOTIFY_SOCKET"] = notify_addr
    notify = Notify(notify_addr)

    listener = None
    pass_fds = ()
    # `exec 3<&N`: the passed socket becomes fd 3 of the service, as systemd arranges it
    wrapper = 'exec "$0" "$@"'
    if name in ("socket", "wrong-pid"):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        fd = listener.fileno()
        if fd > 9:  # sh redirections take one digit
            fail("listening socket got a descriptor above 9")
        pass_fds = (fd,)
        env["LISTEN_FDS"] = "1"
        env["LISTEN_FDNAMES"] = "user-api.socket"
        if name == "socket":
            wrapper = f'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@" 3<&{fd} {fd}<&-'
        else:
            env["LISTEN_PID"] = "1"  # some other process
            wrapper = f'exec "$0" "$@" 3<&{fd} {fd}<&-'
    served_port = listener.getsockname()[1] if name == "socket" else bind_port

    # socket activation's promise: a client that connects before the service runs is served
    early = {}
    if name == "socket":
        def early_request():
            try:
                early["status"], _ = get(served_port, "/health/live", timeout=START_TIMEOUT)
            except OSError as e:
                early["error"] = repr(e)
        early_thread = threading.Thread(target=early_request)
        early_thread.start()

    log = open(os.path.join(tmp, f"{name}.log"), "w+")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["/bin/sh", "-c", wrapper, binary, "serve"],
        env=env, pass_fds=pass_fds, stdout=log, stderr=subprocess.STDOUT,
    )
    if listener is not None and name == "socket":
        listener.close()  # the service holds it now (systemd keeps its own copy; no matter here)

    try:
        check(name, proc, notify, t0, served_port, bind_port, early,
              early_thread if name == "socket" else None, log)
    except Exception as e:  # a request that failed or timed out: show the service's log
        proc.kill()
        proc.wait()
        log.seek(0)
        sys.stderr.write(log.read()[-3000:])
        fail(f"[{name}] {e!r}")
    finally:
        notify.sock.close()
        if listener is not None:
            listener.close()


def check(name, proc, notify, t0, served_port, bind_port, early, early_thread, log):
    def die(msg):
        proc.kill()
        proc.wait()
        log.seek(0)
        sys.stderr.write(log.read()[-3000:])
        fail(f"[{name}] {msg}")

    ready = notify.wait_for("READY", "1", t0 + START_TIMEOUT)
    if ready is None:
        die(f"no READY=1 within {START_TIMEOUT} s (got {notify.messages})")
    t_ready, pid, _ = ready
    if pid != proc.pid:
        die(f"READY=1 came from pid {pid}, not the main pid {proc.pid} (NotifyAccess=main)")
    # READY=1 means it serves: the very next request must succeed
    status, body = get(served_port, "/health")
    if status != 200:
        die(f"/health answered {status} right after READY=1: {body!r}")
    if name == "socket":
        early_thread.join(10)
        if early.get("status") != 200:
            die(f"the request sent before start-up was not served: {early}")
        if listening(bind_port):
            die(f"with an inherited socket it also bound BIND (port {bind_port})")
    if name == "wrong-pid":
        if not listening(bind_port):
            die("with LISTEN_PID of another process it did not bind BIND")
        status, _ = get(bind_port, "/health")
        if status != 200:
            die(f"/health on BIND answered {status}")
    for n in range(20):
        status, body = get(served_port, "/users?limit=1")
        if status != 200:
            die(f"request {n + 1} of 20 before SIGTERM answered {status}: {body!r}")

    t_term = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stopping = notify.wait_for("STOPPING", "1", t_term + STOP_TIMEOUT)
    if stopping is None:
        die(f"no STOPPING=1 within {STOP_TIMEOUT} s after SIGTERM (got {notify.messages})")
    if stopping[1] != proc.pid:
        die(f"STOPPING=1 came from pid {stopping[1]}, not {proc.pid}")
    try:
        code = proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        die(f"still running {STOP_TIMEOUT} s after SIGTERM")
    t_exit = time.monotonic()
    if code != 0:
        die(f"exit code {code} after SIGTERM")
    order = [k for _, _, f in notify.messages for k in f]
    if order.index("READY") > order.index("STOPPING"):
        die(f"STOPPING=1 before READY=1: {notify.messages}")
    print(f"    {name:9}  READY=1 after {t_ready - t0:.2f} s (pid {pid}, /health 200 at once); "
          f"SIGTERM -> STOPPING=1 in {stopping[0] - t_term:.3f} s, exit 0 in {t_exit - t_term:.2f} s; "
          f"served on {'the passed fd 3' if name == 'socket' else 'BIND'}")


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    binary = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="user-api-manager.") as tmp:
        creds = os.path.join(tmp, "credentials")
        os.mkdir(creds, 0o700)
        with open(os.path.join(creds, "db_password"), "w") as f:
            f.write(os.environ["DB_PASSWORD"])
        os.chmod(os.path.join(creds, "db_password"), 0o400)
        base_env = {
            "PATH": "/usr/bin:/bin",
            "CREDENTIALS_DIRECTORY": creds,
            **{k: os.environ[k] for k in ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER")},
        }
        for name in ("socket", "bind", "wrong-pid"):
            run(name, binary, base_env, tmp)


if __name__ == "__main__":
    main()
