"""The throw-away process of :mod:`.probe`: make one call with the scenario's arguments, print the errno.

Run as a script (``python -I -S probe_child.py CALL ARGS...``), it imports nothing of uffdsim: the
parent passes every number it needs.  It prints the errno of the call (0: it succeeded), or
``unknown`` where its own address space could decide the answer; a call that wrecks this
process's own memory may kill it before it prints anything, which the parent reads as "the
kernel accepted the arguments".
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
V, S = ctypes.c_void_p, ctypes.c_size_t


def report(text: str) -> None:
    os.write(1, text.encode() + b"\n")
    os._exit(0)


def result(ret: int) -> None:
    report(str(ctypes.get_errno() if ret == -1 else 0))


def open_uffd(nr: int, flags: int, api_req: int, api: int, features: int) -> int:
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(flags))
    if fd < 0:
        report("unknown")
    buf = ctypes.create_string_buffer(struct.pack("=QQQ", api, features, 0), 24)
    if libc.ioctl(fd, ctypes.c_ulong(api_req), buf) != 0:
        report("unknown")
    return fd


def uffd_of_exited_mm(args: list[int]) -> int:
    """A userfaultfd whose mm is gone: the ioctl checks its arguments, then mmget_not_zero() fails."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        fd = open_uffd(*args)
        socket.send_fds(theirs, [b"u"], [fd])
        os._exit(0)
    _, fds, _, _ = socket.recv_fds(mine, 1, 1)
    os.waitpid(pid, 0)
    if not fds:
        report("unknown")
    return fds[0]


def mapped(addr: int, length: int) -> bool:
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo < addr + length and addr < hi:
                return True
    return False


def main(call: str, a: list[int]) -> None:
    if call == "munmap":
        result(libc.munmap(V(a[0]), S(a[1])))
    elif call == "mprotect":
        result(libc.mprotect(V(a[0]), S(a[1]), ctypes.c_int(a[2])))
    elif call == "madvise":
        if libc.madvise(V(a[0]), S(a[1]), ctypes.c_int(a[2])) == 0:
            report("0")
        if ctypes.get_errno() != errno.EINVAL:
            report(str(ctypes.get_errno()))
        # EINVAL: the arguments, or the advice on one of our own VMAs (a VM_PFNMAP one, say)?
        # MADV_NORMAL (0) has the same start and length checks and no VMA it refuses
        if libc.madvise(V(a[0]), S(a[1]), ctypes.c_int(0)) == -1 and ctypes.get_errno() == errno.EINVAL:
            report(str(errno.EINVAL))
        report("unknown")
    elif call == "mlock":
        result(libc.mlock2(V(a[0]), S(a[1]), ctypes.c_uint(a[2])) if a[2] else libc.mlock(V(a[0]), S(a[1])))
    elif call == "munlock":
        result(libc.munlock(V(a[0]), S(a[1])))
    elif call == "register":        # start len mode request, then the uffd's open arguments
        fd = uffd_of_exited_mm(a[4:])
        buf = ctypes.create_string_buffer(struct.pack("=QQQQ", a[0], a[1], a[2], 0), 32)
        result(libc.ioctl(fd, ctypes.c_ulong(a[3]), buf))
    elif call == "move":            # dst src len mode request, then the uffd's open arguments
        if mapped(a[0] & ~0xFFF, 4096):
            report("unknown")       # our own memory at dst: its VMA checks could answer
        fd = open_uffd(*a[5:])
        buf = ctypes.create_string_buffer(struct.pack("=QQQQq", a[0], a[1], a[2], a[3], 0), 40)
        result(libc.ioctl(fd, ctypes.c_ulong(a[4]), buf))
    report("unknown")


if __name__ == "__main__":
    main(sys.argv[1], [int(x) for x in sys.argv[2:]])
