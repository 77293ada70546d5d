#!/usr/bin/env python3
"""Checks the system calls a binary made under qemu-user against the unit's seccomp filter.

    syscalls.py UNIT STRACE_LOG...

STRACE_LOG is what `qemu-<arch>-static -strace -D LOG` wrote: one line per guest system call,
under the guest architecture's own names (mmap2, _llseek, clock_gettime64, set_tls on armv7).
The allowed set is what UNIT's SystemCallFilter= lines leave, with the groups expanded by this
host's `systemd-analyze syscall-filter` (the names are the same on every architecture; systemd
resolves them for its native one). Prints the calls made and exits 1 when one is not allowed.
"""

import re
import subprocess
import sys

# ARM's private system calls (__ARM_NR_BASE 0x0f0000 + n), which qemu's strace does not name
ARM_PRIVATE = {0x0F0001: "breakpoint", 0x0F0002: "cacheflush", 0x0F0003: "usr26",
               0x0F0004: "usr32", 0x0F0005: "set_tls", 0x0F0006: "get_tls"}


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
            names.add(ARM_PRIVATE.get(number, f"unknown:{number}"))
        else:
            names.add(m.group(2))
    return names


def main():
    unit, logs = sys.argv[1], sys.argv[2:]
    allowed = allowed_by(unit, groups())
    failed = False
    for log in logs:
        made = calls(log)
        denied = sorted(n for n in made if n not in allowed)
        print(f"{log}: {len(made)} distinct system calls: {' '.join(sorted(made))}")
        if denied:
            print(f"  NOT allowed by {unit}: {' '.join(denied)}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
