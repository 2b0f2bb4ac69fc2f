"""Constants, ioctl numbers and structure layouts of the userfaultfd uAPI and friends."""
from __future__ import annotations

import os
import struct

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
