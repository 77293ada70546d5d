#!/usr/bin/env python3
"""Hold many idle and slowloris connections against a local server and report its memory.

Opens IDLE keep-alive connections (each makes one request, then stays idle) and SLOW
connections (each sends part of a head, then one byte a second), reads VmRSS/VmHWM of the
server from /proc/PID/status, and times a normal request on a fresh connection while all
of them are held. Loopback only; bounded in connections and time; stops by itself.

    python3 scripts/idle_load.py --pid PID --port PORT [--idle 5000] [--slow 200] [--hold 5]
        [--cafile CA.pem]

Run the server with timeouts longer than the hold, e.g.
HEADER_TIMEOUT_SECS=120 KEEPALIVE_TIMEOUT_SECS=120 target/release/examples/echo_server

With --cafile every connection speaks TLS (verified against CA.pem, for 127.0.0.1): run
the server with TLS_CERT_FILE and TLS_KEY_FILE then. Each idle connection has completed
its handshake and one request; the slow ones complete the handshake, then dribble a head.
"""

import argparse
import resource
import socket
import ssl
import sys
import time

HOST = "127.0.0.1"
REQUEST = b"GET /probe HTTP/1.1\r\nHost: load\r\n\r\n"
TLS = None  # an ssl.SSLContext when --cafile is given


def connect(port):
    s = socket.create_connection((HOST, port), timeout=5)
    if TLS is not None:
        s = TLS.wrap_socket(s, server_hostname=HOST)
    return s


def status(pid):
    """VmRSS and VmHWM of pid, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                fields[key] = int(value.split()[0])
    return fields


def read_response(sock):
    """Reads one Content-Length framed response; returns the status line."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside a body")
        body += chunk
    return head.split(b"\r\n")[0].decode()


def timed_request(port):
    start = time.monotonic()
    with connect(port) as s:
        s.sendall(REQUEST)
        line = read_response(s)
    return line, time.monotonic() - start


def still_open(sock):
    """True when the server has neither closed nor answered this connection."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except (BlockingIOError, ssl.SSLWantReadError):
        return True
    except OSError:
        return False
    # Either b"" (closed) or bytes (say, a 408): in neither case still held.
    return False


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--idle", type=int, default=5000)
    p.add_argument("--slow", type=int, default=200)
    p.add_argument("--hold", type=float, default=5.0, help="seconds to hold them all")
    p.add_argument("--cafile", help="speak TLS, trusting this CA (PEM)")
    args = p.parse_args()
    global TLS
    if args.cafile:
        TLS = ssl.create_default_context(cafile=args.cafile)
    if args.idle + args.slow > 20000 or args.hold > 60:
        sys.exit("refusing: keep the load bounded (<= 20000 connections, <= 60 s)")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"client open-files limit raised from {soft} to {hard}")

    before = status(args.pid)
    print(f"server before: {before}")

    idle = []
    for _ in range(args.idle):
        s = connect(args.port)
        s.sendall(REQUEST)
        read_response(s)
        idle.append(s)
    after_idle = status(args.pid)
    print(f"server with {len(idle)} idle keep-alive connections: {after_idle}")

    slow = []
    for _ in range(args.slow):
        s = connect(args.port)
        s.sendall(b"GET /slowloris HTTP/1.1\r\nHost: load\r\nX-Slow: ")
        slow.append(s)

    deadline = time.monotonic() + args.hold
    worst = 0.0
    while time.monotonic() < deadline:
        for s in slow:
            try:
                s.send(b"a")
            except OSError:
                pass
        line, took = timed_request(args.port)
        worst = max(worst, took)
        time.sleep(1)
    held = status(args.pid)
    print(f"server with {len(idle)} idle + {len(slow)} slowloris: {held}")

    line, took = timed_request(args.port)
    print(f"normal request while held: {line!r} in {took * 1000:.1f} ms "
          f"(worst during hold {max(worst, took) * 1000:.1f} ms)")
    open_idle = sum(still_open(s) for s in idle)
    open_slow = sum(still_open(s) for s in slow)
    print(f"still open at the end: {open_idle}/{len(idle)} idle, {open_slow}/{len(slow)} slow")
    for s in idle + slow:
        s.close()
    ok = took < 1.0 and open_idle == len(idle) and open_slow == len(slow)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
