#!/usr/bin/env python3
"""Memory of a server running natively or under qemu-user, and idle connections against it.

    probe.py rss --pid PID --binary PATH
        prints "own_kib=N process_kib=M": M is the process's VmRSS; N is the part that is the
        program's own. Natively they are the same. Under qemu-user the process also holds the
        emulator (its code, heap, translation cache and host thread stacks), so N counts only
        the resident pages of the guest's address space: the mappings of the binary and the
        anonymous mappings inside the guest's window (see guest_window).
    probe.py idle --pid PID --binary PATH --port PORT --count N --budget SECONDS
        opens N keep-alive connections to 127.0.0.1:PORT, each makes one request and stays
        idle, then checks a fresh connection is still answered and that all N are still open;
        prints the memory before and with them held. Stops at the budget (exit 2: the count
        was not reached in time, which the caller reports rather than fails on), exits 1 on a
        wrong answer. Loopback only, bounded in count (<= 20 000) and time (<= 120 s).
"""

import argparse
import os
import resource
import socket
import struct
import sys
import time

# read_response and still_open: the loopback client of scripts/idle_load.py, not a copy.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../scripts"))
from idle_load import read_response, still_open  # noqa: E402

HOST = "127.0.0.1"
REQUEST = b"GET /health/live HTTP/1.1\r\nHost: arm-probe\r\n\r\n"


def mappings(pid):
    """(start, end, perms, path, rss_kib) for each mapping of pid."""
    out = []
    current = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 5)
            if "-" in first[0] and len(first) >= 5 and not first[0].endswith(":"):
                start, end = (int(x, 16) for x in first[0].split("-"))
                path = first[5].strip() if len(first) > 5 else ""
                current = [start, end, first[1], path, 0]
                out.append(current)
            elif first[0] == "Rss:" and current is not None:
                current[4] = int(first[1])
    return out


def elf_first_load(binary):
    """(is_64_bit, vaddr of the first PT_LOAD, page-aligned) of an ELF executable."""
    with open(binary, "rb") as f:
        ident = f.read(16)
        is64 = ident[4] == 2
        if is64:
            f.seek(0x20)
            (phoff,) = struct.unpack("<Q", f.read(8))
            f.seek(0x36)
        else:
            f.seek(0x1C)
            (phoff,) = struct.unpack("<I", f.read(4))
            f.seek(0x2A)
        phentsize, phnum = struct.unpack("<HH", f.read(4))
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            header = f.read(phentsize)
            if struct.unpack("<I", header[:4])[0] != 1:  # PT_LOAD
                continue
            vaddr = struct.unpack("<Q" if is64 else "<I", header[16:24] if is64 else header[8:12])[0]
            return is64, vaddr & ~0xFFF
    raise ValueError(f"{binary}: no PT_LOAD")


def guest_window(maps, binary):
    """The host address range holding the guest's memory under qemu-user.

    qemu maps the guest's address 0 at host address guest_base, and maps the binary where the
    guest asked for it, so guest_base = (where the binary's first segment is) - (its vaddr).
    A 32-bit guest lives in the 4 GiB above guest_base. A 64-bit guest here runs with
    guest_base 0, its heap and thread stacks from 0x5500000000 (qemu's mmap base for 64-bit
    guests), far below the emulator's own heap (0x55..._...., a PIE's brk) and libraries
    (0x7f...): 1 TiB covers the guest and nothing of qemu's."""
    is64, vaddr = elf_first_load(binary)
    starts = [m[0] for m in maps if m[3] == binary]
    if not starts:
        raise ValueError(f"{binary} is not mapped in the process")
    base = min(starts) - vaddr
    return base, base + ((1 << 40) if is64 else (1 << 32))


def rss(pid, binary, native):
    maps = mappings(pid)
    total = sum(m[4] for m in maps)
    if native:
        return total, total
    low, high = guest_window(maps, binary)
    own = sum(
        m[4]
        for m in maps
        if low <= m[0] < high and not m[3].startswith("[") and (m[3] == "" or m[3] == binary)
    )
    return own, total


def idle(args, native):
    if args.count > 20000 or args.budget > 120:
        sys.exit("refusing: keep the load bounded (<= 20000 connections, <= 120 s)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    own, total = rss(args.pid, args.binary, native)
    print(f"before: own_kib={own} process_kib={total}")
    start = time.monotonic()
    deadline = start + args.budget
    held = []
    try:
        while len(held) < args.count and time.monotonic() < deadline:
            s = socket.create_connection((HOST, args.port), timeout=10)
            s.sendall(REQUEST)
            line = read_response(s)
            if " 200 " not in line + " ":
                print(f"connection {len(held) + 1}: {line!r}, not a 200")
                return 1
            held.append(s)
        took = time.monotonic() - start
        own, total = rss(args.pid, args.binary, native)
        print(f"held {len(held)} idle connections (opened in {took:.1f} s): "
              f"own_kib={own} process_kib={total}")
        fresh_start = time.monotonic()
        with socket.create_connection((HOST, args.port), timeout=10) as s:
            s.sendall(REQUEST)
            line = read_response(s)
        print(f"a fresh request while they are held: {line!r} in "
              f"{(time.monotonic() - fresh_start) * 1000:.0f} ms")
        still = sum(still_open(s) for s in held)
        print(f"still open: {still}/{len(held)}")
        if " 200 " not in line + " " or still != len(held):
            return 1
        return 0 if len(held) == args.count else 2
    finally:
        for s in held:
            s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["rss", "idle"])
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--binary", required=True, help="the program's path, as the process mapped it")
    p.add_argument("--native", action="store_true", help="not under qemu: VmRSS is the program's")
    p.add_argument("--port", type=int)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--budget", type=float, default=60.0)
    args = p.parse_args()
    if args.what == "rss":
        own, total = rss(args.pid, args.binary, args.native)
        print(f"own_kib={own} process_kib={total}")
        return 0
    return idle(args, args.native)


if __name__ == "__main__":
    sys.exit(main())
