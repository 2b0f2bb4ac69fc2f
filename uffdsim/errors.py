"""Errno names and the error every uffdsim operation raises, as the kernel would return it."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import lerrno as _errno  # Linux's numbers on any host (Pyodide's errno module differs)

#: errno names user space can meet around userfaultfd, by value
ERRNO_NAMES: dict[int, str] = {
    getattr(_errno, n): n
    for n in ("EPERM", "ENOENT", "ESRCH", "EINTR", "EAGAIN", "ENOMEM", "EFAULT", "EBUSY",
              "EEXIST", "EINVAL", "ENOSPC", "ENOSYS", "EOPNOTSUPP", "ENOTTY", "EBADF", "EACCES",
              "EIO", "E2BIG", "EPROTO", "ESPIPE", "ETIMEDOUT", "EHWPOISON")
    if hasattr(_errno, n)
}
ERRNO_VALUES: dict[str, int] = {v: k for k, v in ERRNO_NAMES.items()}


def errno_name(code: int) -> str:
    """'EBUSY' for 16; a plain number for an errno we do not name."""
    return ERRNO_NAMES.get(code, str(code))


class UnknownErrno(KeyError, ValueError):
    """An errno name we do not know (a KeyError, as before, and a ValueError), said in one line."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def errno_value(name: str) -> int:
    """16 for 'EBUSY'; raises :class:`UnknownErrno` (a KeyError) for an unknown name."""
    try:
        return ERRNO_VALUES[name]
    except (KeyError, TypeError):
        raise UnknownErrno(f"unknown errno name {name!r:.40} (known: {', '.join(sorted(ERRNO_VALUES))})") from None


@dataclass
class UffdError(Exception):
    """A failed system call: the errno the kernel returns, and for the range ioctls the output field.

    ``out`` mirrors ``uffdio_move.move`` (or ``.copy`` / ``.zeropage``): ``None`` when the kernel
    rejected the call before writing the field, a negative errno when nothing was done, a positive
    byte count with ``errno == EAGAIN`` after partial progress.  ``trail`` is the explanation trail
    (see :mod:`uffdsim.trail`) when the simulator produced the error.
    """

    errno: int
    message: str = ""
    out: int | None = None
    trail: object | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__init__(self.errno, self.message)

    @property
    def name(self) -> str:
        return errno_name(self.errno)

    def __str__(self) -> str:
        tail = f": {self.message}" if self.message else ""
        return f"{self.name}{tail}"
