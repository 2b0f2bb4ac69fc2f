"""libc through ctypes: raw syscalls and ioctls, and the memory calls (mmap, madvise, mlock, peek/poke)."""
from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform

from uffdsim.errors import UffdError

from .abi import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    PAGE_SIZE,
    PMD_SIZE,
    PROT_READ,
    PROT_WRITE,
    _SYSCALLS,
)

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
    """madvise(2) with a MADV_* number; raises UffdError carrying the kernel's errno on failure."""
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
