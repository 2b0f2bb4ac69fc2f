"""The scenario's own memory in a scenario process, and range system calls kept inside it.

A scenario process is a Python interpreter: its heap, stacks and libraries are mappings too.  A
step like ``madvise: {at: src, pages: 2**34, advice: dontneed}`` would zap them on the real
kernel (the process dies of SIGSEGV).  The simulator only knows the scenario's regions, so the
rest of the address space is a hole there.  This module gives the kernel backend the same view:
it remembers the regions ``mmap`` created (a forked child inherits the list with its memory) and
issues a range system call only on the parts of the range the scenario owns, answering for the
rest what the kernel answers for a hole (the checks of the argument come first, from
:mod:`uffdsim.mm.process`, so that the errno is the kernel's in both backends).
"""
from __future__ import annotations

import errno as E
from typing import Callable

from ...errors import UffdError
from ...mm.folio import TASK_SIZE
from ...mm.process import check_madvise, check_mlock, check_mprotect, check_munmap

#: [start, end) of every region of the scenario mapped in this process, sorted
OWNED: list[tuple[int, int]] = []


def own(start: int, end: int) -> None:
    """A new region (op ``mmap``)."""
    OWNED.append((start, end))
    OWNED.sort()


def disown(start: int, end: int) -> None:
    """The range was unmapped."""
    out: list[tuple[int, int]] = []
    for s, e in OWNED:
        if e <= start or end <= s:
            out.append((s, e))
            continue
        if s < start:
            out.append((s, start))
        if end < e:
            out.append((end, e))
    OWNED[:] = out


def pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The parts of [start, end) that belong to the scenario, in order."""
    return [(max(s, start), min(e, end)) for s, e in OWNED if s < end and start < e]


def covered(start: int, end: int) -> bool:
    """Does the scenario own all of [start, end)?"""
    at = start
    for s, e in pieces(start, end):
        if s != at:
            return False
        at = e
    return at >= end


def owned_end(addr: int) -> int:
    """The end of the scenario's memory that contains ``addr`` (``addr`` itself when none does)."""
    for s, e in OWNED:
        if s <= addr < e:
            return e
    return addr


Call = Callable[[int, int], None]


def munmap(addr: int, length: int, call: Call) -> None:
    """munmap(): the scenario's parts of the range; the rest is a hole (munmap of a hole succeeds)."""
    end = check_munmap(addr, length)
    for s, e in pieces(addr, end):
        call(s, e - s)
        disown(s, e)


def madvise(addr: int, length: int, call: Call) -> None:
    """madvise(): applied to each mapped part; ENOMEM when part of the range is a hole."""
    end = check_madvise(addr, length)
    if end is None:
        return
    if covered(addr, end):
        call(addr, end - addr)
        return
    for s, e in pieces(addr, end):
        call(s, e - s)
    raise UffdError(E.ENOMEM, "part of the range is not mapped (by the scenario)")


def populate(addr: int, length: int, call: Call) -> None:
    """madvise(MADV_POPULATE_*): the kernel stops at the first hole (ENOMEM), so do the pieces up to it."""
    end = check_madvise(addr, length)
    if end is None:
        return
    for s, e in pieces(addr, end):
        if s != addr:
            break
        call(s, e - s)
        addr = e
    if addr != end:
        raise UffdError(E.ENOMEM, "part of the range is not mapped (by the scenario)")


def mprotect(addr: int, length: int, call: Call) -> None:
    """mprotect(): ENOMEM (nothing changed, as the simulator models it) when part of the range is a hole."""
    end = check_mprotect(addr, length)
    if end is None:
        return
    if not covered(addr, end):
        raise UffdError(E.ENOMEM, "part of the range is not mapped (by the scenario)")
    call(addr, end - addr)


def mlock(addr: int, length: int, call: Call) -> None:
    """mlock()/munlock(): ENOMEM (nothing locked, as the simulator models it) when part is a hole."""
    rng = check_mlock(addr, length)
    if rng is None:
        return
    if not covered(*rng):
        raise UffdError(E.ENOMEM, "part of the range is not mapped (by the scenario)")
    call(addr, length)


def foreign(start: int, end: int, maps: list[tuple[int, int]]) -> bool:
    """Does [start, end) overlap a mapping of this process that is not the scenario's?"""
    return any(ms < end and start < me and not covered(max(ms, start), min(me, end)) for ms, me in maps)
