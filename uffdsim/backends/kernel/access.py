"""The user accesses a scenario asks for (``write``, ``read``, ``fault_async``), made on the kernel.

Each page is touched for real, in user mode, by an accessor task that shares the scenario
process's mm (:mod:`.sys.touch`): the kernel handles the fault (or sends SIGSEGV/SIGBUS, which end
only the accessor) and we report what it did: EFAULT with the signal's name, as the simulator
reports a fatal signal.  Nothing is predicted.  A fault that sleeps in a userfault keeps the
accessor asleep; while the step's worker waits for it, :func:`.procstate.in_userfault` sees the
accessor's sleep as the worker's, so the step is ``hung`` (or the thread ``blocked``) as before.

One rule, as in :mod:`.owned`: memory of the interpreter that the scenario did not map is a hole
for the scenario and is never touched; an access there is reported as the SIGSEGV a hole gives.
"""
from __future__ import annotations

import errno as E
import signal
import threading

from ...errors import UffdError
from . import owned
from . import sys as k
from .procstate import ACCESSORS
from .sys import touch
from .sys.pagemap import Mapping, mappings  # noqa: F401 - ops and observe take them from here

PAGE = k.PAGE_SIZE
NAMES = {signal.SIGSEGV: "SIGSEGV", signal.SIGBUS: "SIGBUS"}


def segv(addr: int, why: str) -> UffdError:
    return UffdError(E.EFAULT, f"{why} at {addr:#x}")


def interpreter_page(page: int) -> bool:
    """Is the page mapped in this process by someone other than the scenario (the interpreter)?"""
    return bool(owned.interpreter_parts(page, page + PAGE))


def accessor_access(addr: int, length: int, write: bool, value: int) -> int:
    """One accessor over ``[addr, addr+length)``; 0 or the signal.  While it runs, its sleep is the
    calling thread's for :func:`.procstate.in_userfault`."""
    tid = threading.get_native_id()
    acc = touch.start(addr, length, write, value)
    ACCESSORS[tid] = acc.pid
    try:
        return touch.finish(acc)
    finally:
        ACCESSORS.pop(tid, None)


def signal_error(page: int, sig: int, write: bool) -> UffdError:
    what = "write" if write else "read"
    return segv(page, f"{NAMES.get(sig, f'signal {sig}')}: the kernel ended the {what} access")


def user_access(pages: list[int], write: bool, value: int = 0, first: int | None = None) -> UffdError | None:
    """Touch the pages in order, in user mode, as the scenario's thread would (a write stores
    ``value`` in every byte): None, or the first page's signal as EFAULT.  With ``first`` (an address
    in the first page), only the one byte there is touched.

    One accessor goes over them all; if the kernel ends it with a signal, one accessor per page
    goes over them again (the pages before the fault are written already: the same bytes again)
    to find the page that faults.  The interpreter's pages are never touched (a hole's SIGSEGV)."""
    if first is not None:
        if interpreter_page(pages[0]):
            return segv(pages[0], "SIGSEGV (not made: the interpreter's memory, a hole for the scenario)")
        sig = accessor_access(first, 1, write, value)
        return signal_error(pages[0], sig, write) if sig else None
    mine = []
    for page in pages:
        if interpreter_page(page):
            break
        mine.append(page)
    if mine and accessor_access(mine[0], len(mine) * PAGE, write, value):
        for page in mine:
            sig = accessor_access(page, PAGE, write, value)
            if sig:
                return signal_error(page, sig, write)
    if len(mine) < len(pages):
        return segv(pages[len(mine)], "SIGSEGV (not made: the interpreter's memory, a hole for the scenario)")
    return None


def page_range(addr: int, length: int) -> list[int]:
    """The pages an access of [addr, addr+length) touches, up to the first one outside the scenario's
    memory (the access stops there with a fault): bounded by the region, whatever the length."""
    first = addr & ~(PAGE - 1)
    stop = min(addr + length, max(owned.owned_end(first), first) + PAGE)
    return list(range(first, stop, PAGE))
