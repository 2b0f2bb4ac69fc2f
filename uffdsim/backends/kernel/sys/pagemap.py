"""Looking at pages without touching them: /proc/self/pagemap, /proc/kpageflags, PAGEMAP_SCAN, THP."""
from __future__ import annotations

import ctypes
import errno
import os
import re
import struct
from dataclasses import dataclass
from typing import Iterator

from uffdsim.errors import UffdError

from .abi import PAGE_SIZE, PMD_SIZE, _IOWR
from .libc import ioctl

PM_PFN_MASK = (1 << 55) - 1
PM_SOFT_DIRTY, PM_EXCLUSIVE, PM_UFFD_WP, PM_GUARD = 1 << 55, 1 << 56, 1 << 57, 1 << 58
PM_FILE, PM_SWAP, PM_PRESENT = 1 << 61, 1 << 62, 1 << 63
#: swap type pagemap reports for PTE markers (SWP_PTE_MARKER, the last of the 32 swap types)
PTE_MARKER_SWAP_TYPE = 31

KPF: dict[str, int] = {n: b for b, n in enumerate(
    "locked error referenced uptodate dirty lru active slab writeback reclaim buddy mmap anon "
    "swapcache swapbacked compound_head compound_tail huge unevictable hwpoison nopage ksm thp "
    "offline zero_page idle pgtable".split())}


@dataclass(frozen=True)
class PagemapEntry:
    """One 64-bit /proc/self/pagemap entry (Documentation/admin-guide/mm/pagemap.rst)."""

    addr: int
    raw: int

    present = property(lambda s: bool(s.raw & PM_PRESENT))
    swapped = property(lambda s: bool(s.raw & PM_SWAP))
    file_shared = property(lambda s: bool(s.raw & PM_FILE))     # file page or shared anon
    exclusive = property(lambda s: bool(s.raw & PM_EXCLUSIVE))  # mapped exactly once
    uffd_wp = property(lambda s: bool(s.raw & PM_UFFD_WP))
    guard = property(lambda s: bool(s.raw & PM_GUARD))          # guard region (6.15+)
    soft_dirty = property(lambda s: bool(s.raw & PM_SOFT_DIRTY))

    @property
    def pfn(self) -> int:
        """Page frame number of a present page (0 without CAP_SYS_ADMIN)."""
        return self.raw & PM_PFN_MASK if self.present else 0

    @property
    def marker(self) -> str | None:
        """'guard', 'poison' or 'uffd_wp' for a PTE marker (pagemap shows it as a swap entry of
        type 31 whose offset holds the marker bits), else None. Root only: without CAP_SYS_ADMIN
        pagemap reports every swap entry's type and offset as 0 (pte_to_pagemap_entry() fills them
        only when it may show PFNs; seen on 6.18), so this is None."""
        if not self.swapped or self.swap_type != PTE_MARKER_SWAP_TYPE:
            return None
        bits = self.swap_offset
        return ("guard" if bits & 4 else "poison" if bits & 2 else "uffd_wp" if bits & 1
                else f"marker:{bits:#x}")

    @property
    def swap_type(self) -> int:
        return self.raw & 0x1F if self.swapped else -1

    @property
    def swap_offset(self) -> int:
        return (self.raw & PM_PFN_MASK) >> 5 if self.swapped else -1


def pagemap(addr: int, npages: int = 1, pid: int | str = "self") -> list[PagemapEntry]:
    """Entries for npages pages starting at the page containing addr."""
    first = addr // PAGE_SIZE
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        data = os.pread(fd, 8 * npages, 8 * first)
    finally:
        os.close(fd)
    vals = struct.unpack(f"={len(data) // 8}Q", data)
    return [PagemapEntry((first + i) * PAGE_SIZE, v) for i, v in enumerate(vals)]


#: KPF_OWNER_2 (bit 34; KPF_MAPPEDTODISK before 6.12): the folio's PG_owner_2, which for an anonymous
#: folio is PG_anon_exclusive (include/linux/page-flags.h, 5.19+); tools/mm/page-types.c prints it
#: as ``anon_exclusive`` together with KPF_ANON
KPF_OWNER_2 = 34


def _read_u64s(path: str, index: int, count: int) -> list[int]:
    """``count`` u64 entries of a /proc/kpage* file from entry ``index`` (needs root)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, 8 * count, 8 * index)
    finally:
        os.close(fd)
    return list(struct.unpack(f"={len(data) // 8}Q", data))


def kpageflags(pfn: int) -> int:
    """/proc/kpageflags for one frame (needs root); 0 for pfn 0."""
    if pfn <= 0:
        return 0
    vals = _read_u64s("/proc/kpageflags", pfn, 1)
    return vals[0] if vals else 0


def kpageflags_range(pfn: int, count: int) -> list[int]:
    """/proc/kpageflags for frames ``pfn`` .. ``pfn + count - 1`` in one read (needs root)."""
    return _read_u64s("/proc/kpageflags", pfn, count) if pfn > 0 and count > 0 else []


def kpagecount(pfn: int) -> int:
    """/proc/kpagecount for one frame (needs root): folio_precise_page_mapcount() of the page
    (6.18 with CONFIG_PAGE_MAPCOUNT: its PTE mappings plus the PMD mappings of its folio)."""
    if pfn <= 0:
        return 0
    vals = _read_u64s("/proc/kpagecount", pfn, 1)
    return vals[0] if vals else 0


def kpf_anon_exclusive(flags: int) -> bool:
    """PG_anon_exclusive as /proc/kpageflags shows it: KPF_OWNER_2 on an anonymous (KPF_ANON) page.

    /proc/kpageflags is a debugging interface without a stable meaning for this bit, and it is
    read racily (nothing is locked; the flag can change while it is read).  Since 6.10
    (stable_page_flags() reads ``folio->flags``) a page of a large folio reports its *head page's*
    flag: measured on 6.18, a tail page of a PTE-mapped THP that a write fault reused (and so made
    exclusive) after fork and exit still shows 0, the flag of its head page.
    """
    return bool(flags >> KPF["anon"] & 1) and bool(flags >> KPF_OWNER_2 & 1)


#: the most frames a folio can span (PMD order on x86-64): folio_order() looks no further
MAX_FOLIO_NR = PMD_SIZE // PAGE_SIZE


def folio_span(pfn: int, flags: int | None = None) -> tuple[int, int]:
    """(first frame, number of frames) of the folio holding frame ``pfn``: see :func:`folio_order`."""
    if flags is None:
        flags = kpageflags(pfn)
    tail, head = 1 << KPF["compound_tail"], 1 << KPF["compound_head"]
    if not flags & (tail | head):
        return pfn, 1
    start = pfn
    if flags & tail:
        lo = max(1, pfn - MAX_FOLIO_NR + 1)
        back = kpageflags_range(lo, pfn - lo)
        start = next((lo + i for i in range(len(back) - 1, -1, -1) if back[i] & head), pfn)
        if start == pfn:           # no head within reach: racing with a split
            return pfn, 1
    after = kpageflags_range(start + 1, MAX_FOLIO_NR - 1)
    return start, 1 + next((i for i, f in enumerate(after) if not f & tail), len(after))


def folio_order(pfn: int, flags: int | None = None) -> int:
    """The order of the folio holding frame ``pfn``, from /proc/kpageflags' compound bits (root).

    0 for a page that is not part of a compound page; else the head is found walking back over
    KPF_COMPOUND_TAIL frames and the folio's size by walking forward from it (at most
    :data:`MAX_FOLIO_NR` frames; kpageflags is read racily, so a folio split meanwhile may give a
    smaller order)."""
    return max(folio_span(pfn, flags)[1].bit_length() - 1, 0)


def folio_span(pfn: int, flags: int | None = None, limit: int = 512) -> tuple[int, int]:
    """The folio holding frame ``pfn`` as (first frame, number of frames), from the compound head and
    tail bits of /proc/kpageflags (root); (pfn, 1) for a page that is neither head nor tail."""
    flags = kpageflags(pfn) if flags is None else flags
    head = pfn
    if not kpf_test(flags, "compound_head"):
        if not kpf_test(flags, "compound_tail"):
            return pfn, 1
        while head > pfn - limit and not kpf_test(kpageflags(head), "compound_head"):
            head -= 1
    nr = 1
    while nr < limit and kpf_test(kpageflags(head + nr), "compound_tail"):
        nr += 1
    return head, nr


def kpf_test(flags: int, name: str) -> bool:
    return bool(flags >> KPF[name] & 1)


def _page_is(entry: PagemapEntry, kpf: str, scan_category: int) -> bool:
    """A present page's kpageflags bit ``kpf``; without root (PFN hidden) its PAGEMAP_SCAN category."""
    if not entry.present:
        return False
    if entry.pfn:
        return kpf_test(kpageflags(entry.pfn), kpf)
    try:
        return any(cat & scan_category for _, _, cat in pagemap_scan(entry.addr, PAGE_SIZE))
    except UffdError:
        return False


def is_zero_page(entry: PagemapEntry) -> bool:
    """The shared zero page (or the huge zero page); without root (PFN hidden) via PAGEMAP_SCAN."""
    return _page_is(entry, "zero_page", PAGE_IS_PFNZERO)


def is_thp(entry: PagemapEntry) -> bool:
    """Part of a transparent huge page (PMD- or PTE-mapped; without root, PMD-mapped only)."""
    return _page_is(entry, "thp", PAGE_IS_HUGE)


def is_ksm(entry: PagemapEntry) -> bool:
    """KPF_KSM of the present page (root). Not proof of KSM: from 6.10 (dee3d0bef2b0), a kernel
    without the 2026 fix "fs/proc: fix KPF_KSM reported for all anonymous pages" sets it on every
    anonymous page (the lab's 6.12.118 does; this machine's 6.18.44 does not); the kernel
    backend's observe also reads /proc/self/ksm_stat."""
    return entry.present and kpf_test(kpageflags(entry.pfn), "ksm")


def is_anon(entry: PagemapEntry) -> bool:
    return entry.present and kpf_test(kpageflags(entry.pfn), "anon")


# PAGEMAP_SCAN (fs/proc/task_mmu.c, 6.7+): exact per-range categories, including PMD mapping
PAGE_IS_WPALLOWED, PAGE_IS_WRITTEN, PAGE_IS_FILE, PAGE_IS_PRESENT = 1, 2, 4, 8
PAGE_IS_SWAPPED, PAGE_IS_PFNZERO, PAGE_IS_HUGE, PAGE_IS_SOFT_DIRTY = 16, 32, 64, 128
PAGE_IS_GUARD = 256
_PM_SCAN_ARG = struct.Struct("=12Q")
_PAGE_REGION = struct.Struct("=QQQ")
PAGEMAP_SCAN = _IOWR(ord("f"), 16, _PM_SCAN_ARG.size)


#: does the running kernel accept PAGE_IS_GUARD in a PAGEMAP_SCAN mask?  (None: not tried yet.)
#: Observed: 6.12.118 refuses the bit with EINVAL, 6.18 accepts it.
_scan_knows_guard: bool | None = None


def _pagemap_scan(addr: int, length: int, mask: int) -> list[tuple]:
    nvec = length // PAGE_SIZE + 1
    vec = (ctypes.c_char * (_PAGE_REGION.size * nvec))()
    arg = bytearray(_PM_SCAN_ARG.pack(_PM_SCAN_ARG.size, 0, addr, addr + length, 0,
                                      ctypes.addressof(vec), nvec, 0, 0, 0, mask, mask))
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        n = ioctl(fd, PAGEMAP_SCAN, arg)
    finally:
        os.close(fd)
    return [_PAGE_REGION.unpack_from(vec, i * _PAGE_REGION.size) for i in range(n)]


def pagemap_scan(addr: int, length: int, mask: int = PAGE_IS_PRESENT | PAGE_IS_SWAPPED |
                 PAGE_IS_PFNZERO | PAGE_IS_HUGE | PAGE_IS_FILE | PAGE_IS_GUARD) -> list[tuple]:
    """PAGEMAP_SCAN over [addr, addr+length): [(start, end, categories)], categories ∩ mask.

    A kernel that does not know PAGE_IS_GUARD refuses the whole mask with EINVAL; the scan is
    then asked again without that bit (guard markers are still seen in pagemap's bit 58), so
    one unknown category does not cost every other one.
    """
    global _scan_knows_guard
    if mask & PAGE_IS_GUARD and _scan_knows_guard is False:
        mask &= ~PAGE_IS_GUARD
    try:
        regions = _pagemap_scan(addr, length, mask)
    except UffdError as err:
        if not (mask & PAGE_IS_GUARD and err.errno == errno.EINVAL and _scan_knows_guard is None):
            raise
        regions = _pagemap_scan(addr, length, mask & ~PAGE_IS_GUARD)
        _scan_knows_guard = False      # the same range without the bit works: the bit was refused
        return regions
    if mask & PAGE_IS_GUARD:
        _scan_knows_guard = True
    return regions


# --------------------------------------------------------------------------------------------
# transparent huge pages

_THP = "/sys/kernel/mm/transparent_hugepage"


def _read_choice(path: str) -> str:
    """'always [madvise] never' -> 'madvise'; plain values returned stripped."""
    text = open(path).read().strip()
    m = re.search(r"\[(\w+)\]", text)
    return m.group(1) if m else text


def thp_enabled() -> str:
    """'always', 'madvise' or 'never' ('' if the kernel has no THP)."""
    try:
        return _read_choice(f"{_THP}/enabled")
    except OSError:
        return ""


def thp_use_zero_page() -> bool:
    try:
        return open(f"{_THP}/use_zero_page").read().strip() == "1"
    except OSError:
        return False


def is_pmd_mapped(addr: int) -> bool:
    """Is the page at addr mapped by a huge PMD (not merely part of a PTE-mapped THP)?

    Exact with PAGEMAP_SCAN; without it a page :func:`pmd_mapped_guess` cannot decide counts as
    PMD-mapped."""
    base = addr & ~(PAGE_SIZE - 1)
    try:
        regions = pagemap_scan(base, PAGE_SIZE, PAGE_IS_HUGE)
        return any(cat & PAGE_IS_HUGE for _, _, cat in regions)
    except UffdError:
        pass
    return pmd_mapped_guess(pagemap(base)[0]) is not False


def pmd_mapped_guess(entry: PagemapEntry, flags: int | None = None) -> bool | None:
    """Without PAGEMAP_SCAN (Linux < 6.7): is the present page in ``entry`` mapped by a huge PMD?

    True or False where /proc can decide it, None where it cannot.  A page that is not part of a
    THP, a VMA without PMD mappings (smaps ``AnonHugePages`` 0), a VMA that does not cover the
    page's whole 2 MiB block, or frames that are not the contiguous frames of one aligned folio
    rule a PMD mapping out; the huge zero page is only ever mapped by a PMD.  What is left (a
    THP in a VMA that also holds PMD mappings) may still be a PTE-mapped THP: None.
    """
    if not entry.present:
        return False
    if not entry.pfn:           # PFN hidden (no CAP_SYS_ADMIN): kpageflags cannot be asked
        return None
    if flags is None:
        flags = kpageflags(entry.pfn)
    if not kpf_test(flags, "thp"):
        return False
    if kpf_test(flags, "zero_page"):
        return True
    if smaps_field(entry.addr, "AnonHugePages") <= 0:
        return False
    block = entry.addr & ~(PMD_SIZE - 1)
    vma = next((m for m in mappings() if m.start <= entry.addr < m.end), None)
    if vma is None or vma.start > block or vma.end < block + PMD_SIZE:
        return False
    first = pagemap(block, 1)[0]
    index = (entry.addr - block) // PAGE_SIZE
    if not first.present or first.pfn != entry.pfn - index or first.pfn % (PMD_SIZE // PAGE_SIZE):
        return False
    return None


@dataclass
class Mapping:
    """One line of /proc/self/maps: a VMA's [start, end) and its permissions (``rw-p``)."""

    start: int
    end: int
    perms: str


def mappings() -> list[Mapping]:
    """The VMAs of this process, from /proc/self/maps."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            rng, perms = line.split(None, 2)[:2]
            lo, hi = rng.split("-")
            out.append(Mapping(int(lo, 16), int(hi, 16), perms))
    return out


def smaps_lines(addr: int) -> Iterator[str]:
    """The /proc/self/smaps lines of the VMA containing addr (none if no VMA contains it)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                inside = int(m.group(1), 16) <= addr < int(m.group(2), 16)
            elif inside:
                yield line


def smaps_field(addr: int, name: str) -> int:
    """A kB field of /proc/self/smaps for the VMA containing addr (-1 if no VMA contains it)."""
    for line in smaps_lines(addr):
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return -1
