#!/usr/bin/env python3
"""Checks the system calls a binary made under qemu-user against the unit's seccomp filter.

    syscalls.py UNIT STRACE_LOG [--implied NAME...]

STRACE_LOG is what `qemu-<arch>-static -strace -D LOG` wrote: one line per guest system call,
under the guest architecture's own names (mmap2, _llseek, clock_gettime64, set_tls on armv7).
The allowed set is what UNIT's SystemCallFilter= lines leave, with the groups expanded by this
host's `systemd-analyze syscall-filter` (the names are the same on every architecture; systemd
resolves them for its native one). Prints the calls made and exits 1 when one is not allowed.
--implied names calls the binary is known to make that qemu does not log: on 32-bit ARM,
musl's start-up sets the thread pointer with ARM's private set_tls, which qemu carries out
itself, outside its strace.
"""

import argparse
import re
import subprocess
import sys

# Numbers qemu 7.2's strace prints as "Unknown syscall N": ARM's private system calls
# (__ARM_NR_BASE 0x0f0000 + n), and the 64-bit-time calls that every 32-bit architecture
# numbers alike since Linux 5.1 (403-423; unassigned on 64-bit architectures).
UNNAMED = {
    0x0F0001: "breakpoint", 0x0F0002: "cacheflush", 0x0F0003: "usr26", 0x0F0004: "usr32",
    0x0F0005: "set_tls", 0x0F0006: "get_tls",
    403: "clock_gettime64", 404: "clock_settime64", 405: "clock_adjtime64",
    406: "clock_getres_time64", 407: "clock_nanosleep_time64", 408: "timer_gettime64",
    409: "timer_settime64", 410: "timerfd_gettime64", 411: "timerfd_settime64",
    412: "utimensat_time64", 413: "pselect6_time64", 414: "ppoll_time64",
    416: "io_pgetevents_time64", 417: "recvmmsg_time64", 418: "mq_timedsend_time64",
    419: "mq_timedreceive_time64", 420: "semtimedop_time64", 421: "rt_sigtimedwait_time64",
    422: "futex_time64", 423: "sched_rr_get_interval_time64",
}


def groups():
    """Every @group of this host's systemd, each a set of names (groups expanded)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], check=True,
                         capture_output=True, text=True).stdout
    raw, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = raw.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())

    def expand(name, seen=()):
        names = set()
        for item in raw.get(name, []):
            if item.startswith("@"):
                if item not in seen:
                    names |= expand(item, seen + (name,))
            else:
                names.add(item)
        return names

    return {g: expand(g) for g in raw}


def allowed_by(unit, sets):
    """The names UNIT's SystemCallFilter= lines allow, applied in order as systemd does."""
    allow = None
    for line in open(unit):
        m = re.match(r"\s*SystemCallFilter=(~?)(.*)", line)
        if not m:
            continue
        names = set()
        for item in m.group(2).split():
            names |= sets[item] if item.startswith("@") else {item}
        if m.group(1):
            allow = (allow if allow is not None else set().union(*sets.values())) - names
        else:
            allow = names if allow is None else allow | names
    if allow is None:
        sys.exit(f"{unit}: no SystemCallFilter=")
    return allow


def calls(log):
    """The names of the system calls in one qemu strace log."""
    names = set()
    for line in open(log, errors="replace"):
        m = re.match(r"\d+ (?:Unknown syscall (\d+)|([a-z_0-9]+)\()", line)
        if not m:
            continue
        if m.group(1):
            number = int(m.group(1))
            names.add(UNNAMED.get(number, f"unknown:{number}"))
        else:
            names.add(m.group(2))
    return names


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("unit")
    p.add_argument("logs", nargs="+")
    p.add_argument("--implied", nargs="*", default=[])
    args = p.parse_args()
    allowed = allowed_by(args.unit, groups())
    unit = args.unit
    failed = False
    for log in args.logs:
        made = calls(log) | set(args.implied)
        denied = sorted(n for n in made if n not in allowed)
        print(f"{log}: {len(made)} distinct system calls: {' '.join(sorted(made))}")
        if denied:
            print(f"  NOT allowed by {unit}: {' '.join(denied)}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
