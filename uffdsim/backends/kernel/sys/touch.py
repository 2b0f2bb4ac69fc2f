"""User-mode accesses to pages, made by a task that shares this process's mm and may die of them.

A scenario's ``write`` or ``read`` can end in SIGSEGV or SIGBUS (no mapping, no permission, a
guard region, UFFD_FEATURE_SIGBUS, a poisoned page).  The scenario process is a Python
interpreter and cannot survive that signal, so the access is made by an *accessor*: a task made
with ``clone(CLONE_VM)`` (the same mm, so the fault is the scenario's, handled by the same page
tables, VMAs and userfaultfds) but its own thread group and its own signal handlers.  It runs,
through a ``makecontext()`` context on a stack of its own, one libc call in user mode:

* write: ``memset(addr, value, length)`` (the scenario's value: no second write is needed);
* read: ``memcmp(addr, addr, length)``, which loads every byte of the range.

Both go through the range forwards (``rep stosb`` or vector loops, the tail last), so a fault
stops them at the first page that faults.  When the call returns, the context's ``uc_link``
runs ``_exit(6)``; its SIGSEGV and SIGBUS handlers are ``_exit``, so it exits with the signal's
number as its status (no core dump).  The caller waits for it; an access that sleeps in a
userfault keeps the accessor asleep, and the caller with it, exactly as the thread would sleep.
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


MEMSET, MEMCMP, EXIT_FN, SETCONTEXT = (_address(n) for n in ("memset", "memcmp", "_exit", "setcontext"))
FATAL = (signal.SIGSEGV, signal.SIGBUS)
DONE = 6                       #: the accessor's exit status when the call returned
UCONTEXT = 4096                #: room for glibc's ucontext_t (968 bytes on x86-64)
_UC_LINK, _SS_SP, _SS_SIZE = 8, 16, 32     #: offsets in ucontext_t (x86-64 and aarch64 glibc)
_libc.getcontext.argtypes = [ctypes.c_void_p]
_libc.getcontext.restype = ctypes.c_int


class Accessor:
    """A running accessor: its pid, and the memory it runs on (freed by :func:`finish`)."""

    def __init__(self, pid: int, stack: int, keep: list) -> None:
        self.pid, self.stack, self.keep = pid, stack, keep


def _context(buf: ctypes.Array, stack: int, size: int, link: ctypes.Array | None) -> None:
    if _libc.getcontext(buf) != 0:
        raise _fail("getcontext")
    ctypes.c_void_p.from_buffer(buf, _SS_SP).value = stack
    ctypes.c_size_t.from_buffer(buf, _SS_SIZE).value = size
    ctypes.c_void_p.from_buffer(buf, _UC_LINK).value = ctypes.addressof(link) if link is not None else None


def start(addr: int, length: int, write: bool, value: int = 0) -> Accessor:
    """Start an accessor that writes ``value`` over (or reads) ``[addr, addr+length)``."""
    stack = _libc.mmap(None, 3 * STACK, 3, 0x22, -1, 0)      # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    if stack in (None, ctypes.c_void_p(-1).value):
        raise _fail("mmap (accessor stack)")
    run, done = ctypes.create_string_buffer(UCONTEXT), ctypes.create_string_buffer(UCONTEXT)
    _context(done, stack + STACK, STACK, None)
    _libc.makecontext(done, ctypes.c_void_p(EXIT_FN), ctypes.c_int(1), ctypes.c_long(DONE))
    _context(run, stack + 2 * STACK, STACK, done)
    if write:
        _libc.makecontext(run, ctypes.c_void_p(MEMSET), ctypes.c_int(3), ctypes.c_void_p(addr),
                          ctypes.c_long(value), ctypes.c_size_t(length))
    else:
        _libc.makecontext(run, ctypes.c_void_p(MEMCMP), ctypes.c_int(3), ctypes.c_void_p(addr),
                          ctypes.c_void_p(addr), ctypes.c_size_t(length))
    new = ctypes.create_string_buffer(_SIGACTION_SIZE)
    ctypes.c_void_p.from_buffer(new, 0).value = EXIT_FN
    olds = {sig: ctypes.create_string_buffer(_SIGACTION_SIZE) for sig in FATAL}
    with _lock:
        # the accessor copies the handlers at clone() time (no CLONE_SIGHAND): ours are back at once
        for sig in FATAL:
            _libc.sigaction(sig, new, olds[sig])
        try:
            pid = _libc.clone(ctypes.c_void_p(SETCONTEXT), ctypes.c_void_p(stack + STACK),
                              CLONE_VM | signal.SIGCHLD, ctypes.cast(run, ctypes.c_void_p))
            err = ctypes.get_errno()
        finally:
            for sig in FATAL:
                _libc.sigaction(sig, olds[sig], None)
    if pid == -1:
        _libc.munmap(ctypes.c_void_p(stack), 3 * STACK)
        raise UffdError(err, f"clone (accessor): {os.strerror(err)}")
    return Accessor(pid, stack, [run, done])


def finish(acc: Accessor) -> int:
    """Wait for the accessor; 0 if the access was made, else the signal that ended it."""
    _, status = os.waitpid(acc.pid, 0)
    _libc.munmap(ctypes.c_void_p(acc.stack), 3 * STACK)
    acc.keep.clear()
    if os.WIFSIGNALED(status):             # killed from outside (SIGKILL at the end of a run)
        return os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    if code == DONE:
        return 0
    if code in FATAL:
        return code
    raise UffdError(5, f"the accessor exited with status {code}")


def access(addr: int, length: int, write: bool, value: int = 0) -> int:
    """User-mode writes of ``value`` over (or reads of) ``[addr, addr+length)`` in this mm: 0, or SIGSEGV/SIGBUS."""
    return finish(start(addr, length, write, value))
