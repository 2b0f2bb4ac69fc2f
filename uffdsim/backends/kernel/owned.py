"""The scenario's own memory in a scenario process, and range system calls kept out of the interpreter.

A scenario process is a Python interpreter: its heap, stacks and libraries are mappings too.  A
step like ``madvise: {at: src, pages: 2**34, advice: dontneed}`` would zap them on the real
kernel (the process dies of SIGSEGV).  The simulator only knows the scenario's regions, so the
rest of the address space is a hole there.  This module remembers the regions ``mmap`` created (a
forked child inherits the list with its memory) and applies one rule to munmap, mprotect,
madvise, mlock and munlock (and, in :mod:`.ops`, to UFFDIO_REGISTER and UFFDIO_MOVE):

1. A call whose range reaches none of the interpreter's memory (mappings the scenario did not
   create) goes to the kernel exactly as the scenario wrote it.  The kernel's answer is the step's.
2. A call whose range reaches the interpreter's memory is clipped, and only there:

   a. the kernel judges the arguments as written, in a throw-away process (:mod:`.probe`); if it
      refuses them, its errno is the step's and nothing is called here;
   b. otherwise the call is made here on the parts of the range between the interpreter's
      mappings, in order, holes included (the kernel sees those itself); the interpreter's memory
      counts as a hole, which is what the simulator sees there: munmap skips it, madvise goes on
      past it and ends with ENOMEM, mprotect, mlock, munlock and MADV_POPULATE_* stop at it with
      ENOMEM (as the kernel does at a hole, 6.18 ``do_mprotect_pkey()``,
      ``apply_vma_lock_flags()``, ``madvise_populate()``).

No argument check of the model is used: a model wrong about one shows as a divergence.
"""
from __future__ import annotations

import errno as E
from typing import Callable

from ...errors import UffdError
from . import probe
from .sys.abi import PAGE_SIZE
from .sys.pagemap import mappings

TASK_SIZE = 0x7FFF_FFFF_F000      #: x86-64, 4-level page tables: only to place regions (ops.mmap)
ULONG_END = 1 << 64

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


def reach(addr: int, length: int) -> tuple[int, int]:
    """The bytes a range call could reach, whole pages: [addr rounded down, addr + length rounded up), capped at 2**64."""
    lo = addr & ~(PAGE_SIZE - 1)
    hi = min(addr + length + PAGE_SIZE - 1, ULONG_END) & ~(PAGE_SIZE - 1)
    return lo, max(hi, lo)


def interpreter_parts(lo: int, hi: int, maps: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """The parts of [lo, hi) that are mapped in this process but not by the scenario, in order."""
    if maps is None:
        maps = [(m.start, m.end) for m in mappings()]
    out: list[tuple[int, int]] = []
    for ms, me in sorted(maps):
        s, e = max(ms, lo), min(me, hi)
        if s >= e:
            continue
        at = s
        for os_, oe in pieces(s, e):
            if os_ > at:
                out.append((at, os_))
            at = max(at, oe)
        if at < e:
            out.append((at, e))
    return out


def between(addr: int, hi: int, foreign: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [addr, hi) outside ``foreign``, in order (the first starts at ``addr`` unless foreign)."""
    out: list[tuple[int, int]] = []
    at = addr
    for s, e in foreign:
        if s > at:
            out.append((at, s))
        at = max(at, e)
    if at < hi:
        out.append((at, hi))
    return out


def range_call(name: str, addr: int, length: int, call: Call, arg: int = 0) -> None:
    """Make the range call ``name`` by the rule above; ``call(start, length)`` makes it here."""
    lo, hi = reach(addr, length)
    foreign = interpreter_parts(lo, hi)
    if not foreign:
        call(addr, length)
        if name == "munmap":
            disown(lo, hi)
        return
    errno = probe.range_call("madvise" if name == "populate" else name, addr, length, arg)
    if errno is not None:
        raise UffdError(errno, f"{name}: the kernel refused the arguments (asked in a probe process: "
                               "the range reaches the interpreter's memory)")
    parts = between(addr, hi, foreign)
    stops = name in ("mprotect", "mlock", "munlock", "populate")
    if stops:           # they stop at the first hole: the interpreter's memory, or one before it
        parts = parts[:1] if parts and parts[0][0] == addr else []
    hole: UffdError | None = None
    for s, e in parts:
        try:
            call(s, e - s)
        except UffdError as err:
            if name == "madvise" and err.errno == E.ENOMEM:
                hole = err          # madvise goes on past a hole and reports it at the end
                continue
            raise
        if name == "munmap":
            disown(s, e)
    if name != "munmap":
        raise hole or UffdError(E.ENOMEM, f"{name}: the range reaches memory the scenario did not map "
                                          "(a hole for the scenario, the interpreter's here)")


def munmap(addr: int, length: int, call: Call) -> None:
    """munmap() by :func:`range_call`."""
    range_call("munmap", addr, length, call)


def madvise(addr: int, length: int, call: Call, advice: int = 0) -> None:
    """madvise() by :func:`range_call`."""
    range_call("madvise", addr, length, call, advice)


def populate(addr: int, length: int, call: Call, advice: int = 0) -> None:
    """madvise(MADV_POPULATE_*) by :func:`range_call`: like mprotect, it stops at the first hole."""
    range_call("populate", addr, length, call, advice)


def mprotect(addr: int, length: int, call: Call, prot: int = 0) -> None:
    """mprotect() by :func:`range_call`."""
    range_call("mprotect", addr, length, call, prot)


def mlock(addr: int, length: int, call: Call, flags: int = 0, name: str = "mlock") -> None:
    """mlock()/mlock2()/munlock() by :func:`range_call`."""
    range_call(name, addr, length, call, flags)


def foreign(start: int, end: int, maps: list[tuple[int, int]]) -> bool:
    """Does [start, end) overlap a mapping of this process that is not the scenario's?"""
    return any(ms < end and start < me and not covered(max(ms, start), min(me, end)) for ms, me in maps)
