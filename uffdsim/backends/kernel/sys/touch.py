"""One user-mode access to a page, made by a task that shares this process's mm and may die of it.

A scenario's ``write`` or ``read`` can end in SIGSEGV or SIGBUS (no mapping, no permission, a
guard region, UFFD_FEATURE_SIGBUS, a poisoned page).  The scenario process is a Python
interpreter and cannot survive that signal, so the access is made by an *accessor*: a task made
with ``clone(CLONE_VM)`` (the same mm, so the fault is the scenario's, handled by the same page
tables, VMAs and userfaultfds) but its own thread group and its own signal handlers.  Its entry
point is a libc function that makes the access in user mode and returns:

* read: ``seed48(addr)``, which loads 6 bytes from ``addr`` (into libc's drand48 state);
* write: ``pthread_spin_unlock(addr)``, which stores a zero int at ``addr``.

Its SIGSEGV and SIGBUS handlers are ``_exit``, so it exits with the signal's number as its status
(no core dump); a normal return exits with the function's return value (0, or an even pointer for
``seed48``: never 7 or 11).  The caller waits for it; an access that sleeps in a userfault keeps
the accessor asleep, and the caller with it, exactly as the thread would have slept.
"""
from __future__ import annotations

import ctypes
import os
import signal
import threading

from uffdsim.errors import UffdError

from .libc import _libc, _fail

CLONE_VM = 0x0000_0100
STACK = 64 * 1024
_SIGACTION_SIZE = 256          #: room for glibc's struct sigaction (152 bytes on 64-bit)
_lock = threading.Lock()

_libc.clone.restype = ctypes.c_int
_libc.clone.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
_libc.sigaction.restype = ctypes.c_int
_libc.sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


def _address(name: str) -> int:
    return ctypes.cast(getattr(_libc, name), ctypes.c_void_p).value or 0


READ_FN, WRITE_FN, EXIT_FN = _address("seed48"), _address("pthread_spin_unlock"), _address("_exit")
FATAL = (signal.SIGSEGV, signal.SIGBUS)


def start(addr: int, write: bool) -> tuple[int, int]:
    """Start an accessor for ``addr``; (its pid, its stack) for :func:`finish`."""
    stack = _libc.mmap(None, STACK, 3, 0x22, -1, 0)        # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    if stack in (None, ctypes.c_void_p(-1).value):
        raise _fail("mmap (accessor stack)")
    new = ctypes.create_string_buffer(_SIGACTION_SIZE)
    ctypes.memmove(new, ctypes.byref(ctypes.c_void_p(EXIT_FN)), ctypes.sizeof(ctypes.c_void_p))
    olds = {sig: ctypes.create_string_buffer(_SIGACTION_SIZE) for sig in FATAL}
    with _lock:
        # the accessor copies the handlers at clone() time (no CLONE_SIGHAND): ours are back at once
        for sig in FATAL:
            _libc.sigaction(sig, new, olds[sig])
        try:
            pid = _libc.clone(ctypes.c_void_p(WRITE_FN if write else READ_FN), ctypes.c_void_p(stack + STACK),
                              CLONE_VM | signal.SIGCHLD, ctypes.c_void_p(addr))
            err = ctypes.get_errno()
        finally:
            for sig in FATAL:
                _libc.sigaction(sig, olds[sig], None)
    if pid == -1:
        _libc.munmap(ctypes.c_void_p(stack), STACK)
        raise UffdError(err, f"clone (accessor): {os.strerror(err)}")
    return pid, stack


def finish(pid: int, stack: int) -> int:
    """Wait for the accessor; 0 if the access was made, else the signal that ended it."""
    _, status = os.waitpid(pid, 0)
    _libc.munmap(ctypes.c_void_p(stack), STACK)
    if os.WIFSIGNALED(status):             # killed from outside (SIGKILL at the end of a run)
        return os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    return code if code in FATAL else 0


def access(addr: int, write: bool) -> int:
    """One user-mode read or write of ``addr`` in this mm: 0, or SIGSEGV/SIGBUS."""
    return finish(*start(addr, write))
