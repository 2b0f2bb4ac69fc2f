"""Long-term pins through io_uring fixed buffers (pin_user_pages with FOLL_LONGTERM | FOLL_WRITE)."""
from __future__ import annotations

import ctypes
import errno as _errno
import os

from uffdsim.errors import UffdError

from .abi import NR_IO_URING_REGISTER, NR_IO_URING_SETUP
from .libc import syscall

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
