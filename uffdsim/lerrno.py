"""Linux's errno numbers (include/uapi/asm-generic/errno-base.h and errno.h), whatever the host.

The simulator returns what Linux returns, so it must not take these from the host's :mod:`errno`:
under Pyodide (the book's live cells) Python's errno module has Emscripten's numbers, where
EBUSY is 10, not 16.  The simulator's modules do ``from .. import lerrno as E`` and use ``E.EBUSY``
as they would ``errno.EBUSY``; the kernel backend, which talks to a real Linux, uses :mod:`errno`.
"""
from __future__ import annotations

EPERM = 1
ENOENT = 2
ESRCH = 3
EINTR = 4
EIO = 5
ENXIO = 6
E2BIG = 7
EBADF = 9
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
EBUSY = 16
EEXIST = 17
ENODEV = 19
EINVAL = 22
ENOTTY = 25
ENOSPC = 28
ESPIPE = 29
ERANGE = 34
ENOSYS = 38
EPROTO = 71
EOVERFLOW = 75
EOPNOTSUPP = 95
ETIMEDOUT = 110
EHWPOISON = 133

#: every name above, by value
NAMES: dict[int, str] = {v: k for k, v in dict(globals()).items() if k.startswith("E") and isinstance(v, int)}

#: like errno.errorcode: the name of each number above
errorcode: dict[int, str] = NAMES
