"""The running kernel's userfaultfd, memory and introspection system calls, through ctypes.

Nothing to compile: every call goes through libc (``mmap``, ``ioctl``, ``syscall``) with the
structures laid out by hand from ``include/uapi/linux/userfaultfd.h`` and friends.  Failures raise
:class:`uffdsim.errors.UffdError` carrying the kernel errno; the range ioctls also carry their
output field (``None`` when the kernel never wrote it).

Sections: constants; memory (mmap & co, peek/poke); :class:`Userfaultfd` (+ fork_with_events);
pagemap/kpageflags/PAGEMAP_SCAN; THP; long-term pins (io_uring fixed buffers); KSM; zram swap.

Caution: :func:`peek`, :func:`poke` and :func:`fill` really touch memory.  On a missing page in a
MISSING-registered range they block until someone resolves the fault (call them from a helper
thread in that case); on a guard region or PROT_NONE they kill the interpreter with SIGSEGV.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform
import re
import fcntl
import select
import signal
import struct
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from uffdsim.errors import UffdError

# --------------------------------------------------------------------------------------------
# constants

PAGE_SIZE: int = os.sysconf("SC_PAGE_SIZE")
PAGE_SHIFT: int = PAGE_SIZE.bit_length() - 1
#: bytes mapped by one PMD entry: one page table full of 8-byte PTEs (2 MiB with 4 KiB pages)
PMD_SIZE: int = PAGE_SIZE * (PAGE_SIZE // 8)

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0x0, 0x1, 0x2, 0x4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_NORESERVE, MAP_POPULATE, MAP_FIXED_NOREPLACE = 0x4000, 0x8000, 0x100000

MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED = 0, 1, 2, 3, 4
MADV_FREE, MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK = 8, 9, 10, 11
MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE, MADV_NOHUGEPAGE = 12, 13, 14, 15
MADV_DONTDUMP, MADV_DODUMP, MADV_WIPEONFORK, MADV_KEEPONFORK = 16, 17, 18, 19
MADV_COLD, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE = 20, 21, 22, 23
MADV_DONTNEED_LOCKED, MADV_COLLAPSE = 24, 25
MADV_GUARD_INSTALL, MADV_GUARD_REMOVE = 102, 103

O_CLOEXEC: int = os.O_CLOEXEC
O_NONBLOCK: int = os.O_NONBLOCK
UFFD_USER_MODE_ONLY = 1

UFFD_API = 0xAA
UFFD_FEATURE_PAGEFAULT_FLAG_WP = 1 << 0
UFFD_FEATURE_EVENT_FORK = 1 << 1
UFFD_FEATURE_EVENT_REMAP = 1 << 2
UFFD_FEATURE_EVENT_REMOVE = 1 << 3
UFFD_FEATURE_MISSING_HUGETLBFS = 1 << 4
UFFD_FEATURE_MISSING_SHMEM = 1 << 5
UFFD_FEATURE_EVENT_UNMAP = 1 << 6
UFFD_FEATURE_SIGBUS = 1 << 7
UFFD_FEATURE_THREAD_ID = 1 << 8
UFFD_FEATURE_MINOR_HUGETLBFS = 1 << 9
UFFD_FEATURE_MINOR_SHMEM = 1 << 10
UFFD_FEATURE_EXACT_ADDRESS = 1 << 11
UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12
UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
UFFD_FEATURE_POISON = 1 << 14
UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFD_FEATURE_MOVE = 1 << 16
#: feature names as the scenario format spells them (``features: [move, event_fork]``)
UFFD_FEATURES: dict[str, int] = {
    k[len("UFFD_FEATURE_"):].lower(): v for k, v in dict(globals()).items()
    if k.startswith("UFFD_FEATURE_")
}

UFFDIO_REGISTER_MODE_MISSING, UFFDIO_REGISTER_MODE_WP, UFFDIO_REGISTER_MODE_MINOR = 1, 2, 4
UFFDIO_COPY_MODE_DONTWAKE, UFFDIO_COPY_MODE_WP = 1, 2
UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1
UFFDIO_WRITEPROTECT_MODE_WP, UFFDIO_WRITEPROTECT_MODE_DONTWAKE = 1, 2
UFFDIO_CONTINUE_MODE_DONTWAKE, UFFDIO_CONTINUE_MODE_WP = 1, 2
UFFDIO_POISON_MODE_DONTWAKE = 1
UFFDIO_MOVE_MODE_DONTWAKE, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES = 1, 2

UFFD_EVENT_PAGEFAULT, UFFD_EVENT_FORK, UFFD_EVENT_REMAP = 0x12, 0x13, 0x14
UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP = 0x15, 0x16
UFFD_PAGEFAULT_FLAG_WRITE, UFFD_PAGEFAULT_FLAG_WP, UFFD_PAGEFAULT_FLAG_MINOR = 1, 2, 4

_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(direction: int, typ: int, nr: int, size: int) -> int:
    """The generic ioctl encoding of include/uapi/asm-generic/ioctl.h (x86_64, arm64)."""
    return (direction << 30) | (size << 16) | (typ << 8) | nr


def _IO(typ: int, nr: int) -> int:
    return _IOC(_IOC_NONE, typ, nr, 0)


def _IOR(typ: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ, typ, nr, size)


def _IOWR(typ: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, typ, nr, size)


# struct layouts (all little-endian 64-bit fields, no padding)
_API = struct.Struct("=QQQ")            # uffdio_api: api, features, ioctls
_REGISTER = struct.Struct("=QQQQ")      # uffdio_register: start, len, mode, ioctls
_RANGE = struct.Struct("=QQ")           # uffdio_range: start, len
_COPY = struct.Struct("=QQQQq")         # uffdio_copy: dst, src, len, mode, copy
_ZEROPAGE = struct.Struct("=QQQq")      # uffdio_zeropage: start, len, mode, zeropage
_MOVE = struct.Struct("=QQQQq")         # uffdio_move: dst, src, len, mode, move
_WRITEPROTECT = struct.Struct("=QQQ")   # uffdio_writeprotect: start, len, mode
_MSG = struct.Struct("=BBHI24s")        # uffd_msg header + 24-byte union

_UFFDIO_REGISTER, _UFFDIO_UNREGISTER, _UFFDIO_WAKE, _UFFDIO_COPY = 0x00, 0x01, 0x02, 0x03
_UFFDIO_ZEROPAGE, _UFFDIO_MOVE, _UFFDIO_WRITEPROTECT, _UFFDIO_CONTINUE = 0x04, 0x05, 0x06, 0x07
_UFFDIO_POISON, _UFFDIO_API = 0x08, 0x3F

UFFDIO_API = _IOWR(UFFD_API, _UFFDIO_API, _API.size)
UFFDIO_REGISTER = _IOWR(UFFD_API, _UFFDIO_REGISTER, _REGISTER.size)
UFFDIO_UNREGISTER = _IOR(UFFD_API, _UFFDIO_UNREGISTER, _RANGE.size)
UFFDIO_WAKE = _IOR(UFFD_API, _UFFDIO_WAKE, _RANGE.size)
UFFDIO_COPY = _IOWR(UFFD_API, _UFFDIO_COPY, _COPY.size)
UFFDIO_ZEROPAGE = _IOWR(UFFD_API, _UFFDIO_ZEROPAGE, _ZEROPAGE.size)
UFFDIO_MOVE = _IOWR(UFFD_API, _UFFDIO_MOVE, _MOVE.size)
UFFDIO_WRITEPROTECT = _IOWR(UFFD_API, _UFFDIO_WRITEPROTECT, _WRITEPROTECT.size)
USERFAULTFD_IOC_NEW = _IO(UFFD_API, 0x00)
#: bit in the ``ioctls`` masks returned by UFFDIO_API / UFFDIO_REGISTER
UFFDIO_IOCTL_BITS: dict[str, int] = {
    "register": 1 << _UFFDIO_REGISTER, "unregister": 1 << _UFFDIO_UNREGISTER,
    "wake": 1 << _UFFDIO_WAKE, "copy": 1 << _UFFDIO_COPY, "zeropage": 1 << _UFFDIO_ZEROPAGE,
    "move": 1 << _UFFDIO_MOVE, "writeprotect": 1 << _UFFDIO_WRITEPROTECT,
    "continue": 1 << _UFFDIO_CONTINUE, "poison": 1 << _UFFDIO_POISON, "api": 1 << _UFFDIO_API,
}

#: value preset in an output field; the kernel only ever writes a byte count or -errno
UNTOUCHED = -0x5AFE_0000_0000_5AFE

_SYSCALLS = {"x86_64": {"userfaultfd": 323, "swapon": 167, "swapoff": 168},
             "aarch64": {"userfaultfd": 282, "swapon": 224, "swapoff": 225}}
NR_IO_URING_SETUP, NR_IO_URING_REGISTER = 425, 427   # same on x86_64 and arm64 (unified table)

# --------------------------------------------------------------------------------------------
# libc plumbing

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
for _name in ("munmap", "mprotect", "madvise", "mlock", "munlock"):
    getattr(_libc, _name).restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
if hasattr(_libc, "mlock2"):        # glibc >= 2.27
    _libc.mlock2.restype = ctypes.c_int
    _libc.mlock2.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
_libc.ioctl.restype = ctypes.c_int
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.syscall.restype = ctypes.c_long
_libc.read.restype = ctypes.c_ssize_t
_libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _fail(call: str, out: int | None = None) -> UffdError:
    err = ctypes.get_errno()
    return UffdError(err, f"{call}: {os.strerror(err)}", out=out)


def syscall(nr: int, *args: int) -> int:
    """Raw syscall(2) with integer arguments; raises UffdError on -1."""
    ret = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if ret == -1:
        raise _fail(f"syscall {nr}")
    return ret


def syscall_nr(name: str) -> int:
    """This architecture's number for ``name`` (only the ones we need); ENOSYS if unknown."""
    try:
        return _SYSCALLS[platform.machine()][name]
    except KeyError:
        raise UffdError(_errno.ENOSYS, f"no syscall number for {name} on {platform.machine()}")


def ioctl(fd: int, request: int, arg: int | bytearray | ctypes.Array | None = None) -> int:
    """ioctl(fd, request, arg) on any fd; ``arg`` is a buffer (updated in place), an address or None.

    Meant also for deliberately bad calls (unknown requests, bogus pointers, wrong fds)."""
    if isinstance(arg, bytearray):
        buf = (ctypes.c_char * len(arg)).from_buffer(arg)
        ptr = ctypes.addressof(buf)
    elif isinstance(arg, ctypes.Array):
        ptr = ctypes.addressof(arg)
    else:
        ptr = arg or 0
    ret = _libc.ioctl(fd, ctypes.c_ulong(request), ctypes.c_void_p(ptr))
    if ret == -1:
        raise _fail(f"ioctl {request:#x}")
    return ret


# --------------------------------------------------------------------------------------------
# memory


def mmap(length: int, prot: int = PROT_READ | PROT_WRITE, flags: int = MAP_PRIVATE | MAP_ANONYMOUS,
         fd: int = -1, offset: int = 0, addr: int = 0) -> int:
    """mmap(2); returns the address."""
    res = _libc.mmap(ctypes.c_void_p(addr or None), length, prot, flags, fd, offset)
    if res == _MAP_FAILED or res is None:
        raise _fail("mmap")
    return res


def mmap_aligned(length: int, align: int = PMD_SIZE, prot: int = PROT_READ | PROT_WRITE,
                 flags: int = MAP_PRIVATE | MAP_ANONYMOUS) -> int:
    """An anonymous mapping of ``length`` bytes starting at a multiple of ``align`` (over-map, trim)."""
    raw = mmap(length + align, prot, flags)
    start = (raw + align - 1) & ~(align - 1)
    if start > raw:
        munmap(raw, start - raw)
    tail = raw + length + align - (start + length)
    if tail:
        munmap(start + length, tail)
    return start


def munmap(addr: int, length: int) -> None:
    if _libc.munmap(ctypes.c_void_p(addr), length) != 0:
        raise _fail("munmap")


def mprotect(addr: int, length: int, prot: int) -> None:
    if _libc.mprotect(ctypes.c_void_p(addr), length, prot) != 0:
        raise _fail("mprotect")


def madvise(addr: int, length: int, advice: int) -> None:
    if _libc.madvise(ctypes.c_void_p(addr), length, advice) != 0:
        raise _fail(f"madvise({advice})")


MLOCK_ONFAULT = 1


def mlock(addr: int, length: int, onfault: bool = False) -> None:
    """mlock(2), or mlock2(MLOCK_ONFAULT) which locks without populating.

    Plain mlock populates the range (write-faults writable private pages): on an empty range
    registered for MISSING faults it blocks until the faults are resolved."""
    ret = (_libc.mlock2(ctypes.c_void_p(addr), length, MLOCK_ONFAULT) if onfault
           else _libc.mlock(ctypes.c_void_p(addr), length))
    if ret != 0:
        raise _fail("mlock2" if onfault else "mlock")


def munlock(addr: int, length: int) -> None:
    if _libc.munlock(ctypes.c_void_p(addr), length) != 0:
        raise _fail("munlock")


def peek(addr: int, n: int) -> bytes:
    """Read n bytes at addr (faults pages in; releases the GIL while copying)."""
    buf = ctypes.create_string_buffer(n)
    ctypes.memmove(buf, ctypes.c_void_p(addr), n)
    return buf.raw


def poke(addr: int, data: bytes) -> None:
    """Write data at addr (write-faults pages in)."""
    ctypes.memmove(ctypes.c_void_p(addr), data, len(data))


def fill(addr: int, length: int, byte: int) -> None:
    """memset(addr, byte, length)."""
    ctypes.memset(ctypes.c_void_p(addr), byte, length)


def touch_read(addr: int, length: int) -> None:
    """Read one byte of every page in [addr, addr+length) (zero page where never written)."""
    for a in range(addr, addr + length, PAGE_SIZE):
        peek(a, 1)


# --------------------------------------------------------------------------------------------
# userfaultfd


@dataclass
class Userfaultfd:
    """One userfaultfd file descriptor and the ioctls on it (fs/userfaultfd.c's user ABI)."""

    fd: int
    via: str = "syscall"          # or "/dev/userfaultfd"
    features: int = 0
    ioctls: int = 0

    @classmethod
    def open(cls, flags: int = O_CLOEXEC | O_NONBLOCK, user_mode_only: bool = False) -> "Userfaultfd":
        """userfaultfd(2), falling back to /dev/userfaultfd's USERFAULTFD_IOC_NEW on EPERM/ENOSYS."""
        if user_mode_only:
            flags |= UFFD_USER_MODE_ONLY
        first: UffdError | None = None
        try:
            return cls(syscall(syscall_nr("userfaultfd"), flags), "syscall")
        except UffdError as e:
            if e.errno not in (_errno.EPERM, _errno.ENOSYS):
                raise
            first = e
        try:
            dev = os.open("/dev/userfaultfd", os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise UffdError(first.errno, f"userfaultfd(2): {first.message}; "
                            f"/dev/userfaultfd: {e.strerror}") from None
        try:
            return cls(ioctl(dev, USERFAULTFD_IOC_NEW, flags), "/dev/userfaultfd")
        finally:
            os.close(dev)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Userfaultfd":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def api(self, features: int = 0) -> tuple[int, int]:
        """UFFDIO_API handshake; returns (features, ioctls) as reported by the kernel."""
        buf = bytearray(_API.pack(UFFD_API, features, 0))
        ioctl(self.fd, UFFDIO_API, buf)
        _, self.features, self.ioctls = _API.unpack(buf)
        return self.features, self.ioctls

    def register(self, addr: int, length: int, mode: int = UFFDIO_REGISTER_MODE_MISSING) -> int:
        """UFFDIO_REGISTER; returns the ioctls mask usable on the range."""
        buf = bytearray(_REGISTER.pack(addr, length, mode, 0))
        ioctl(self.fd, UFFDIO_REGISTER, buf)
        return _REGISTER.unpack(buf)[3]

    def unregister(self, addr: int, length: int) -> None:
        ioctl(self.fd, UFFDIO_UNREGISTER, bytearray(_RANGE.pack(addr, length)))

    def wake(self, addr: int, length: int) -> None:
        ioctl(self.fd, UFFDIO_WAKE, bytearray(_RANGE.pack(addr, length)))

    def _range_op(self, name: str, request: int, layout: struct.Struct, fields: tuple) -> int:
        buf = bytearray(layout.pack(*fields, UNTOUCHED))
        try:
            ioctl(self.fd, request, buf)
        except UffdError as e:
            out = layout.unpack(buf)[-1]
            raise UffdError(e.errno, f"UFFDIO_{name}: {os.strerror(e.errno)}",
                            out=None if out == UNTOUCHED else out) from None
        return layout.unpack(buf)[-1]

    def copy(self, dst: int, src: int, length: int, mode: int = 0) -> int:
        """UFFDIO_COPY; returns bytes copied. UffdError.out = the ``copy`` field (None: unwritten)."""
        return self._range_op("COPY", UFFDIO_COPY, _COPY, (dst, src, length, mode))

    def zeropage(self, addr: int, length: int, mode: int = 0) -> int:
        """UFFDIO_ZEROPAGE; returns bytes mapped. UffdError.out = the ``zeropage`` field."""
        return self._range_op("ZEROPAGE", UFFDIO_ZEROPAGE, _ZEROPAGE, (addr, length, mode))

    def move(self, dst: int, src: int, length: int, mode: int = 0) -> int:
        """UFFDIO_MOVE; returns bytes moved. UffdError.out = the ``move`` field (None: unwritten)."""
        return self._range_op("MOVE", UFFDIO_MOVE, _MOVE, (dst, src, length, mode))

    def writeprotect(self, addr: int, length: int, wp: bool, dontwake: bool = False) -> None:
        mode = (UFFDIO_WRITEPROTECT_MODE_WP if wp else 0) | \
               (UFFDIO_WRITEPROTECT_MODE_DONTWAKE if dontwake else 0)
        ioctl(self.fd, UFFDIO_WRITEPROTECT, bytearray(_WRITEPROTECT.pack(addr, length, mode)))

    def read_msgs(self, timeout_ms: int = 0) -> list[dict]:
        """Wait up to timeout_ms for the fd to become readable, then read every queued uffd_msg."""
        msgs: list[dict] = []
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        wait = timeout_ms
        while poller.poll(wait):
            try:
                data = os.read(self.fd, _MSG.size * 16)
            except BlockingIOError:
                break
            msgs += [decode_msg(data[i:i + _MSG.size]) for i in range(0, len(data), _MSG.size)]
            wait = 0
        return msgs


def fork_with_events(uffds: list[Userfaultfd], timeout: float = 5.0) -> tuple[int, list[dict]]:
    """os.fork() that survives UFFD_FEATURE_EVENT_FORK; returns (pid, messages read meanwhile).

    With EVENT_FORK, fork() blocks until the FORK event is read, but os.fork() holds the GIL, so
    a Python thread polling the uffd can never read it (deadlock).  Here a thread sits in a raw
    blocking read(2) (ctypes drops the GIL) on each uffd that asked for EVENT_FORK before the
    fork; readers left without an event are interrupted with a signal afterwards.  Messages that
    were already queued come back too.  In the child, pid is 0 and the list is empty."""
    watch = [u for u in uffds if u.features & UFFD_FEATURE_EVENT_FORK]
    if not watch:
        return os.fork(), []
    msgs = [m for u in watch for m in u.read_msgs(0)]
    got: list[bytes] = []
    old = signal.signal(signal.SIGUSR2, lambda *_: None)
    saved = {u.fd: fcntl.fcntl(u.fd, fcntl.F_GETFL) for u in watch}

    def reader(fd: int) -> None:
        buf = ctypes.create_string_buffer(_MSG.size * 16)
        n = _libc.read(fd, buf, len(buf))
        if n > 0:
            got.append(buf.raw[:n])

    threads = []
    for u in watch:
        fcntl.fcntl(u.fd, fcntl.F_SETFL, saved[u.fd] & ~os.O_NONBLOCK)
        threads.append(threading.Thread(target=reader, args=(u.fd,), daemon=True))
        threads[-1].start()
    time.sleep(0.05)                       # let every reader enter read(2)
    pid = os.fork()
    if pid == 0:
        return 0, []
    try:
        deadline = time.monotonic() + timeout
        for t in threads:
            while t.is_alive() and time.monotonic() < deadline:
                t.join(0.05)
                if t.is_alive() and t.ident is not None:
                    signal.pthread_kill(t.ident, signal.SIGUSR2)
    finally:
        for fd, fl in saved.items():
            fcntl.fcntl(fd, fcntl.F_SETFL, fl)
        signal.signal(signal.SIGUSR2, old)
    for raw in got:
        msgs += [decode_msg(raw[i:i + _MSG.size]) for i in range(0, len(raw), _MSG.size)]
    return pid, msgs


def decode_msg(raw: bytes) -> dict:
    """struct uffd_msg -> {'type': 'pagefault'|'fork'|'remap'|'remove'|'unmap'|'unknown', ...}."""
    event, _, _, _, arg = _MSG.unpack(raw)
    if event == UFFD_EVENT_PAGEFAULT:
        flags, address, ptid = struct.unpack("=QQI4x", arg)
        return {"type": "pagefault", "address": address, "flags": flags, "ptid": ptid,
                "write": bool(flags & UFFD_PAGEFAULT_FLAG_WRITE),
                "wp": bool(flags & UFFD_PAGEFAULT_FLAG_WP),
                "minor": bool(flags & UFFD_PAGEFAULT_FLAG_MINOR)}
    if event == UFFD_EVENT_FORK:
        return {"type": "fork", "ufd": struct.unpack_from("=I", arg)[0]}
    if event == UFFD_EVENT_REMAP:
        frm, to, length = struct.unpack("=QQQ", arg)
        return {"type": "remap", "from": frm, "to": to, "len": length}
    if event in (UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP):
        start, end = struct.unpack_from("=QQ", arg)
        return {"type": "remove" if event == UFFD_EVENT_REMOVE else "unmap",
                "start": start, "end": end}
    return {"type": "unknown", "event": event, "raw": raw}


def userfaultfd_available(need_move: bool = True) -> tuple[bool, str]:
    """Can this process use userfaultfd (and UFFDIO_MOVE)?  (ok, reason when not)."""
    try:
        uffd = Userfaultfd.open()
    except UffdError as e:
        if e.errno in (_errno.EPERM, _errno.EACCES):
            return False, ("userfaultfd not permitted (EPERM): set vm.unprivileged_userfaultfd=1, "
                           "use UFFD_USER_MODE_ONLY, grant CAP_SYS_PTRACE, or give read/write "
                           f"access to /dev/userfaultfd ({e.message})")
        if e.errno == _errno.ENOSYS:
            return False, ("userfaultfd(2) returns ENOSYS: blocked by a seccomp filter (Docker's "
                           "default profile, Binder and similar containers) or a kernel without "
                           f"CONFIG_USERFAULTFD ({e.message})")
        return False, f"userfaultfd unavailable: {e}"
    try:
        features, _ = uffd.api(0)
    except UffdError as e:
        return False, f"UFFDIO_API failed: {e}"
    finally:
        uffd.close()
    if need_move and not features & UFFD_FEATURE_MOVE:
        return False, (f"kernel {platform.release()} does not offer UFFD_FEATURE_MOVE "
                       "(UFFDIO_MOVE needs Linux 6.8 or later)")
    return True, f"userfaultfd available via {uffd.via}, features {features:#x}"


# --------------------------------------------------------------------------------------------
# /proc/self/pagemap and /proc/kpageflags (read-only: never faults anything in)

PM_PFN_MASK = (1 << 55) - 1
PM_SOFT_DIRTY, PM_EXCLUSIVE, PM_UFFD_WP, PM_GUARD = 1 << 55, 1 << 56, 1 << 57, 1 << 58
PM_FILE, PM_SWAP, PM_PRESENT = 1 << 61, 1 << 62, 1 << 63
#: swap type pagemap reports for PTE markers (SWP_PTE_MARKER, the last of the 32 swap types)
PTE_MARKER_SWAP_TYPE = 31

KPF: dict[str, int] = {n: b for b, n in enumerate(
    "locked error referenced uptodate dirty lru active slab writeback reclaim buddy mmap anon "
    "swapcache swapbacked compound_head compound_tail huge unevictable hwpoison nopage ksm thp "
    "offline zero_page idle pgtable".split())}


@dataclass(frozen=True)
class PagemapEntry:
    """One 64-bit /proc/self/pagemap entry (Documentation/admin-guide/mm/pagemap.rst)."""

    addr: int
    raw: int

    present = property(lambda s: bool(s.raw & PM_PRESENT))
    swapped = property(lambda s: bool(s.raw & PM_SWAP))
    file_shared = property(lambda s: bool(s.raw & PM_FILE))     # file page or shared anon
    exclusive = property(lambda s: bool(s.raw & PM_EXCLUSIVE))  # mapped exactly once
    uffd_wp = property(lambda s: bool(s.raw & PM_UFFD_WP))
    guard = property(lambda s: bool(s.raw & PM_GUARD))          # guard region (6.15+)
    soft_dirty = property(lambda s: bool(s.raw & PM_SOFT_DIRTY))

    @property
    def pfn(self) -> int:
        """Page frame number of a present page (0 without CAP_SYS_ADMIN)."""
        return self.raw & PM_PFN_MASK if self.present else 0

    @property
    def marker(self) -> str | None:
        """'guard', 'poison' or 'uffd_wp' for a PTE marker (pagemap shows it as a swap entry of
        type 31 whose offset holds the marker bits), else None."""
        if not self.swapped or self.swap_type != PTE_MARKER_SWAP_TYPE:
            return None
        bits = self.swap_offset
        return ("guard" if bits & 4 else "poison" if bits & 2 else "uffd_wp" if bits & 1
                else f"marker:{bits:#x}")

    @property
    def swap_type(self) -> int:
        return self.raw & 0x1F if self.swapped else -1

    @property
    def swap_offset(self) -> int:
        return (self.raw & PM_PFN_MASK) >> 5 if self.swapped else -1


def pagemap(addr: int, npages: int = 1, pid: int | str = "self") -> list[PagemapEntry]:
    """Entries for npages pages starting at the page containing addr."""
    first = addr // PAGE_SIZE
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        data = os.pread(fd, 8 * npages, 8 * first)
    finally:
        os.close(fd)
    vals = struct.unpack(f"={len(data) // 8}Q", data)
    return [PagemapEntry((first + i) * PAGE_SIZE, v) for i, v in enumerate(vals)]


def kpageflags(pfn: int) -> int:
    """/proc/kpageflags for one frame (needs root); 0 for pfn 0."""
    if pfn <= 0:
        return 0
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        data = os.pread(fd, 8, 8 * pfn)
    finally:
        os.close(fd)
    return struct.unpack("=Q", data)[0] if len(data) == 8 else 0


def kpf_test(flags: int, name: str) -> bool:
    return bool(flags >> KPF[name] & 1)


def is_zero_page(entry: PagemapEntry) -> bool:
    """The shared zero page (or the huge zero page)."""
    return entry.present and kpf_test(kpageflags(entry.pfn), "zero_page")


def is_thp(entry: PagemapEntry) -> bool:
    """Part of a transparent huge page (PMD- or PTE-mapped)."""
    return entry.present and kpf_test(kpageflags(entry.pfn), "thp")


def is_ksm(entry: PagemapEntry) -> bool:
    return entry.present and kpf_test(kpageflags(entry.pfn), "ksm")


def is_anon(entry: PagemapEntry) -> bool:
    return entry.present and kpf_test(kpageflags(entry.pfn), "anon")


# PAGEMAP_SCAN (fs/proc/task_mmu.c, 6.7+): exact per-range categories, including PMD mapping
PAGE_IS_WPALLOWED, PAGE_IS_WRITTEN, PAGE_IS_FILE, PAGE_IS_PRESENT = 1, 2, 4, 8
PAGE_IS_SWAPPED, PAGE_IS_PFNZERO, PAGE_IS_HUGE, PAGE_IS_SOFT_DIRTY = 16, 32, 64, 128
PAGE_IS_GUARD = 256
_PM_SCAN_ARG = struct.Struct("=12Q")
_PAGE_REGION = struct.Struct("=QQQ")
PAGEMAP_SCAN = _IOWR(ord("f"), 16, _PM_SCAN_ARG.size)


def pagemap_scan(addr: int, length: int, mask: int = PAGE_IS_PRESENT | PAGE_IS_SWAPPED |
                 PAGE_IS_PFNZERO | PAGE_IS_HUGE | PAGE_IS_FILE | PAGE_IS_GUARD) -> list[tuple]:
    """PAGEMAP_SCAN over [addr, addr+length): [(start, end, categories)], categories ∩ mask."""
    nvec = length // PAGE_SIZE + 1
    vec = (ctypes.c_char * (_PAGE_REGION.size * nvec))()
    arg = bytearray(_PM_SCAN_ARG.pack(_PM_SCAN_ARG.size, 0, addr, addr + length, 0,
                                      ctypes.addressof(vec), nvec, 0, 0, 0, mask, mask))
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        n = ioctl(fd, PAGEMAP_SCAN, arg)
    finally:
        os.close(fd)
    return [_PAGE_REGION.unpack_from(vec, i * _PAGE_REGION.size) for i in range(n)]


# --------------------------------------------------------------------------------------------
# transparent huge pages

_THP = "/sys/kernel/mm/transparent_hugepage"


def _read_choice(path: str) -> str:
    """'always [madvise] never' -> 'madvise'; plain values returned stripped."""
    text = open(path).read().strip()
    m = re.search(r"\[(\w+)\]", text)
    return m.group(1) if m else text


def thp_enabled() -> str:
    """'always', 'madvise' or 'never' ('' if the kernel has no THP)."""
    try:
        return _read_choice(f"{_THP}/enabled")
    except OSError:
        return ""


def thp_use_zero_page() -> bool:
    try:
        return open(f"{_THP}/use_zero_page").read().strip() == "1"
    except OSError:
        return False


def is_pmd_mapped(addr: int) -> bool:
    """Is the page at addr mapped by a huge PMD (not merely part of a PTE-mapped THP)?"""
    base = addr & ~(PAGE_SIZE - 1)
    try:
        regions = pagemap_scan(base, PAGE_SIZE, PAGE_IS_HUGE)
        return any(cat & PAGE_IS_HUGE for _, _, cat in regions)
    except UffdError:
        pass
    e = pagemap(base)[0]   # fallback: a THP page in a VMA that smaps says holds PMD mappings
    return is_thp(e) and smaps_field(base, "AnonHugePages") > 0


def smaps_lines(addr: int) -> Iterator[str]:
    """The /proc/self/smaps lines of the VMA containing addr (none if no VMA contains it)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                inside = int(m.group(1), 16) <= addr < int(m.group(2), 16)
            elif inside:
                yield line


def smaps_field(addr: int, name: str) -> int:
    """A kB field of /proc/self/smaps for the VMA containing addr (-1 if no VMA contains it)."""
    for line in smaps_lines(addr):
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return -1


# --------------------------------------------------------------------------------------------
# long-term pins: io_uring fixed buffers (FOLL_LONGTERM | FOLL_WRITE)

IORING_REGISTER_BUFFERS, IORING_UNREGISTER_BUFFERS = 0, 1
_IO_URING_PARAMS_SIZE = 120


class Pin:
    """Long-term pin of [addr, addr+length) by registering it as an io_uring fixed buffer.

    Registration write-faults the pages in and pins them; ``release()`` unregisters."""

    def __init__(self, addr: int, length: int) -> None:
        self.addr, self.length, self.ring = addr, length, -1
        try:
            disabled = open("/proc/sys/kernel/io_uring_disabled").read().strip()
        except OSError:
            disabled = "0"
        if disabled == "2":
            raise UffdError(_errno.EPERM, "io_uring disabled (kernel.io_uring_disabled=2)")
        params = (ctypes.c_char * _IO_URING_PARAMS_SIZE)()
        try:
            self.ring = syscall(NR_IO_URING_SETUP, 1, ctypes.addressof(params))
        except UffdError as e:
            raise UffdError(e.errno, "io_uring unavailable for pinning (io_uring_setup: "
                            f"{os.strerror(e.errno)}; seccomp or kernel.io_uring_disabled?)")
        iov = (ctypes.c_uint64 * 2)(addr, length)
        try:
            syscall(NR_IO_URING_REGISTER, self.ring, IORING_REGISTER_BUFFERS,
                    ctypes.addressof(iov), 1)
        except UffdError as e:
            os.close(self.ring)
            self.ring = -1
            raise UffdError(e.errno, f"IORING_REGISTER_BUFFERS: {os.strerror(e.errno)}"
                            " (RLIMIT_MEMLOCK too low?)") from None

    def release(self) -> None:
        if self.ring >= 0:
            try:
                syscall(NR_IO_URING_REGISTER, self.ring, IORING_UNREGISTER_BUFFERS, 0, 0)
            finally:
                os.close(self.ring)
                self.ring = -1

    def __enter__(self) -> "Pin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------------------------
# KSM (/sys/kernel/mm/ksm)

KSM_DIR = "/sys/kernel/mm/ksm"
KSM_TUNABLES = ("run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes",
                "use_zero_pages", "max_page_sharing", "smart_scan", "advisor_mode")


def ksm_read(name: str) -> str:
    return _read_choice(f"{KSM_DIR}/{name}")


def ksm_write(name: str, value: str | int) -> None:
    with open(f"{KSM_DIR}/{name}", "w") as f:
        f.write(str(value))


def ksm_available() -> tuple[bool, str]:
    if not os.path.isdir(KSM_DIR):
        return False, "kernel without CONFIG_KSM (/sys/kernel/mm/ksm missing)"
    if not os.access(f"{KSM_DIR}/run", os.W_OK):
        return False, "cannot write /sys/kernel/mm/ksm/run (needs root)"
    return True, "KSM available"


def ksm_save() -> dict[str, str]:
    """The current KSM tunables (those this kernel has)."""
    return {n: ksm_read(n) for n in KSM_TUNABLES if os.path.exists(f"{KSM_DIR}/{n}")}


def ksm_restore(saved: dict[str, str]) -> None:
    """Write saved tunables back; 'run' last.  merge_across_nodes is only writable with no pages
    shared, so a failure to restore an unchanged value is ignored."""
    for name, value in saved.items():
        if name != "run" and ksm_read(name) != value:
            try:
                ksm_write(name, value)
            except OSError:
                pass
    ksm_write("run", saved.get("run", "0"))


def ksm_stats() -> dict[str, int]:
    names = ("full_scans", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
             "ksm_zero_pages")
    return {n: int(ksm_read(n)) for n in names if os.path.exists(f"{KSM_DIR}/{n}")}


def ksm_merge_until_stable(timeout: float = 30.0, scans: int = 2, pages_to_scan: int = 10000,
                           sleep_millisecs: int = 0) -> dict[str, int]:
    """Run ksmd fast until ``scans`` full scans have completed after enabling, then restore the
    saved settings (merged pages stay merged when run goes back to 0).  Returns ksm_stats().

    Only pages in MADV_MERGEABLE ranges are considered.  Raises ETIMEDOUT after ``timeout``."""
    saved = ksm_save()
    try:
        if "smart_scan" in saved:
            ksm_write("smart_scan", 0)
        ksm_write("pages_to_scan", pages_to_scan)
        ksm_write("sleep_millisecs", sleep_millisecs)
        start = int(ksm_read("full_scans"))
        ksm_write("run", 1)
        deadline = time.monotonic() + timeout
        while int(ksm_read("full_scans")) < start + scans:
            if time.monotonic() > deadline:
                raise UffdError(_errno.ETIMEDOUT, f"KSM did not finish {scans} scans in {timeout}s")
            time.sleep(0.01)
        return ksm_stats()
    finally:
        ksm_restore(saved)


def ksm_unmerge_all(saved: dict[str, str] | None = None) -> None:
    """Write 2 to run (unmerge every KSM page), then restore ``saved`` (default: run=0)."""
    ksm_write("run", 2)
    ksm_restore(saved or {"run": "0"})


# --------------------------------------------------------------------------------------------
# swap on a zram device (for MADV_PAGEOUT experiments); needs root and a zram0 device


def swaps_active() -> list[str]:
    """Active swap devices/files from /proc/swaps."""
    with open("/proc/swaps") as f:
        return [line.split()[0] for line in f.readlines()[1:] if line.strip()]


class ZramSwap:
    """A small swap device on /dev/zram0 for the duration of a ``with`` block.

    Writes the swap header itself (like mkswap) and calls swapon(2)/swapoff(2); on exit the swap
    is switched off and the zram device reset.  Raises UffdError with the reason if impossible."""

    def __init__(self, size_mb: int = 64, dev: str = "zram0") -> None:
        self.size_mb, self.dev, self.path, self.on = size_mb, dev, f"/dev/{dev}", False

    def __enter__(self) -> "ZramSwap":
        sysdir = f"/sys/block/{self.dev}"
        if not os.path.isdir(sysdir) or not os.path.exists(self.path):
            raise UffdError(_errno.ENODEV, f"no {self.path} (zram not built in / module not loaded)")
        if open(f"{sysdir}/disksize").read().strip() != "0" or self.path in swaps_active():
            raise UffdError(_errno.EBUSY, f"{self.path} already in use")
        try:
            with open(f"{sysdir}/disksize", "w") as f:
                f.write(f"{self.size_mb}M")
            npages = self.size_mb * 1024 * 1024 // PAGE_SIZE
            header = bytearray(PAGE_SIZE)
            struct.pack_into("=III", header, 1024, 1, npages - 1, 0)   # version, last_page, bad
            header[PAGE_SIZE - 10:] = b"SWAPSPACE2"
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.pwrite(fd, bytes(header), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            path = ctypes.create_string_buffer(self.path.encode())
            syscall(syscall_nr("swapon"), ctypes.addressof(path), 0)
            self.on = True
        except (OSError, UffdError) as e:
            self._reset()
            code = e.errno if isinstance(e.errno, int) else _errno.EIO
            raise UffdError(code, f"cannot set up swap on {self.path}: {e}") from None
        return self

    def _reset(self) -> None:
        try:
            with open(f"/sys/block/{self.dev}/reset", "w") as f:
                f.write("1")
        except OSError:
            pass

    def __exit__(self, *exc: object) -> None:
        if self.on:
            path = ctypes.create_string_buffer(self.path.encode())
            syscall(syscall_nr("swapoff"), ctypes.addressof(path))
            self.on = False
        self._reset()
