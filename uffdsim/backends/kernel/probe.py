"""Ask the kernel what it says to a call's arguments, in a throw-away process.

A range call that would reach the interpreter's own memory cannot be made in the scenario process
as written (:mod:`.owned`).  Its arguments still go to the kernel unchanged: a fresh process
(``posix_spawn``, so the scenario's memory is never forked and its pages stay as they are) makes
the same call and reports the errno.  The kernel checks the arguments of these calls before it
looks at a single VMA, so an argument error is the answer the scenario process would have got.

What the probe's answer means (:func:`verdict`):

* an errno the kernel gives before touching memory: ``refused`` with that errno;
* success, or the call reached the probe's own memory (it died of it, or answered with an errno its
  own mappings decide): ``accepted``; the scenario process then makes the clipped call.

Which errnos are argument errors is the kernel's check order, per call: EINVAL for all of them;
for ``mprotect`` ENOMEM too when the range wraps (6.18 ``do_mprotect_pkey()``), which a probe whose
start address is a hole (ENOMEM as well) cannot tell apart: the probe is told the answer is an
argument error only when the range wraps.  ``register`` uses a userfaultfd whose mm has exited, so
after its argument checks it fails with ENOMEM (``mmget_not_zero()``) before any VMA is looked at;
``move`` uses a userfaultfd of the probe, whose destination is unmapped there (ENOENT after the
argument checks).
"""
from __future__ import annotations

import errno as E
import os
import select
import signal
import sys
import time
from pathlib import Path

from . import sys as k

CHILD = Path(__file__).with_name("probe_child.py")
TIMEOUT = 20.0           #: s a probe may take (its interpreter's start-up on a loaded machine)
ULONG = (1 << 64) - 1


class ProbeFailed(Exception):
    """The probe could not give an answer (it could not start, or did not finish in time)."""


def ask(call: str, *args: int) -> int | None:
    """Run the probe; the errno it printed (0 for success), or None when it died of its call."""
    r, w = os.pipe()
    try:
        pid = os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", str(CHILD), call, *map(str, args)],
                             dict(os.environ), file_actions=[(os.POSIX_SPAWN_DUP2, w, 1)])
    except OSError as err:
        os.close(r)
        os.close(w)
        raise ProbeFailed(f"could not start the probe: {err}") from None
    os.close(w)
    out = b""
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([r], [], [], 0.05)
            if ready:
                chunk = os.read(r, 256)
                if not chunk:
                    break
                out += chunk
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace").strip()
    if text.isdigit():
        return int(text)
    if text == "unknown" or os.WIFSIGNALED(status):
        return None
    raise ProbeFailed(f"the probe answered {text!r} (status {status})")


def refused(call: str, errno: int | None, addr: int = 0, length: int = 0) -> bool:
    """Is the probe's errno the kernel's refusal of the arguments (nothing touched)?"""
    if errno is None or errno == 0:
        return False
    if errno == E.ENOMEM:
        return call == "mprotect" and (addr + ((length + k.PAGE_SIZE - 1) & ~(k.PAGE_SIZE - 1) & ULONG)) & ULONG <= addr
    return True


def range_call(call: str, addr: int, length: int, arg: int = 0) -> int | None:
    """The kernel's errno for the arguments of munmap/mprotect/madvise/mlock/munlock, or None if accepted."""
    errno = ask(call, addr, length, arg)
    return errno if refused(call, errno, addr, length) else None


def uffd_open_args(uffd: k.Userfaultfd) -> list[int]:
    flags = k.O_CLOEXEC | (k.UFFD_USER_MODE_ONLY if uffd.user_mode_only else 0)
    return [k.syscall_nr("userfaultfd"), flags, k.UFFDIO_API, k.UFFD_API]


def register(uffd: k.Userfaultfd, start: int, length: int, mode: int) -> int | None:
    """UFFDIO_REGISTER's errno for these arguments, or None if accepted (ENOMEM from the exited mm)."""
    errno = ask("register", start, length, mode, k.UFFDIO_REGISTER, *uffd_open_args(uffd), 0)
    return None if errno in (None, 0, E.ENOMEM) else errno


def move(uffd: k.Userfaultfd, dst: int, src: int, length: int, mode: int) -> int | None:
    """UFFDIO_MOVE's errno for these arguments, or None if accepted (ENOENT: no VMA at dst in the probe)."""
    errno = ask("move", dst, src, length, mode, k.UFFDIO_MOVE, *uffd_open_args(uffd), k.UFFD_FEATURE_MOVE)
    return None if errno in (None, 0, E.ENOENT) else errno
