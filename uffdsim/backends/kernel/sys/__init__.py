"""The running kernel's userfaultfd, memory and introspection system calls, through ctypes.

Nothing to compile: every call goes through libc (``mmap``, ``ioctl``, ``syscall``) with the
structures laid out by hand from ``include/uapi/linux/userfaultfd.h`` and friends.  Failures raise
:class:`uffdsim.errors.UffdError` carrying the kernel errno; the range ioctls also carry their
output field (``None`` when the kernel never wrote it).

Modules: :mod:`.abi` (constants and layouts), :mod:`.libc` (syscalls, memory), :mod:`.uffd`
(:class:`Userfaultfd`), :mod:`.pagemap` (pagemap, kpageflags, PAGEMAP_SCAN, THP), :mod:`.pins`
(io_uring long-term pins), :mod:`.refs` (ordinary references: vmsplice into a pipe), :mod:`.tuning` (KSM, zram swap).  Everything is re-exported here, so
``from uffdsim.backends.kernel import sys as k`` gives the whole API as ``k.NAME``.

Caution: :func:`peek`, :func:`poke` and :func:`fill` really touch memory.  On a missing page in a
MISSING-registered range they block until someone resolves the fault (call them from a helper
thread in that case); on a guard region or PROT_NONE they kill the interpreter with SIGSEGV.
"""
from __future__ import annotations

from .abi import *  # noqa: F401,F403
from .libc import *  # noqa: F401,F403
from .uffd import *  # noqa: F401,F403
from .pagemap import *  # noqa: F401,F403
from .pins import *  # noqa: F401,F403
from .refs import *  # noqa: F401,F403
from .tuning import *  # noqa: F401,F403
# private names other modules of the kernel backend use
from .abi import _MOVE  # noqa: F401
from .pagemap import _THP  # noqa: F401
from .pins import _IO_URING_PARAMS_SIZE  # noqa: F401
