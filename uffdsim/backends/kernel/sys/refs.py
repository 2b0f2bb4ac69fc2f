"""Ordinary page references (FOLL_GET, not pins): pages spliced into a pipe with vmsplice()."""
from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os

from uffdsim.errors import UffdError

from .libc import _libc

__all__ = ["PageRef"]

F_SETPIPE_SZ = 1031
_libc.vmsplice.restype = ctypes.c_ssize_t
_libc.vmsplice.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_uint]


class PageRef:
    """References to the pages of [addr, addr+length): vmsplice() (without SPLICE_F_GIFT) into a
    pipe takes them with get_user_pages_fast() (an ordinary reference each, no pin, the page stays
    anon-exclusive); ``release()`` closes the pipe, which drops them."""

    def __init__(self, addr: int, length: int) -> None:
        self.fds: tuple[int, int] | None = None
        rfd, wfd = os.pipe()
        try:
            fcntl.fcntl(wfd, F_SETPIPE_SZ, max(length, 4096))
        except OSError as e:
            os.close(rfd)
            os.close(wfd)
            raise UffdError(e.errno or _errno.EPERM, f"pipe of {length} bytes: {e.strerror} (fs.pipe-max-size?)") from None
        iov = (ctypes.c_uint64 * 2)(addr, length)
        done = _libc.vmsplice(wfd, ctypes.addressof(iov), 1, 0)
        if done != length:
            err = ctypes.get_errno() if done < 0 else _errno.EAGAIN
            os.close(rfd)
            os.close(wfd)
            raise UffdError(err, f"vmsplice() took {max(done, 0)} of {length} bytes: {os.strerror(err)}")
        self.fds = (rfd, wfd)

    def release(self) -> None:
        if self.fds is not None:
            for fd in self.fds:
                os.close(fd)
            self.fds = None
