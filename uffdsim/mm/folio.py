"""Physical memory: folios with their counters and flags, the zero pages, and the swap device."""
from __future__ import annotations

from dataclasses import dataclass, field

PAGE_SIZE = 4096
PAGE_SHIFT = 12
HPAGE_PMD_NR = 512
HPAGE_PMD_SIZE = PAGE_SIZE * HPAGE_PMD_NR
TASK_SIZE = 0x7FFF_FFFF_F000      #: the end of user space: x86-64, 4-level page tables


@dataclass(eq=False, slots=True)
class Folio:
    """A folio (struct folio): one page, ``nr`` = 4..256 for a multi-size THP (mTHP, 16 KiB to
    1 MiB), or ``nr`` = 512 for a PMD-size THP.

    Each 4 KiB page of it is a physical frame, numbered ``pfn + i``.  Per page we keep the
    content (every byte of the page holds ``data[i]``), the PageAnonExclusive flag and the
    PTE mapcount; ``entire_mapcount`` counts PMD mappings of the whole folio.
    """

    pfn: int
    nr: int
    data: list[int]
    exclusive: list[bool]
    mapcount: list[int]
    entire_mapcount: int = 0
    pincount: int = 0
    refs: int = 0                      #: ordinary (FOLL_GET) references, e.g. a page in a pipe after vmsplice()
    anon: bool = True
    ksm: bool = False
    zero: bool = False
    huge_zero: bool = False
    dirty: bool = False
    lazyfree: bool = False
    swap_entry: int | None = None      #: in the swap cache for this entry
    page_cache: bool = False           #: held by a file's page cache (not anonymous)
    freed: bool = False

    @property
    def large(self) -> bool:
        return self.nr > 1

    @property
    def order(self) -> int:
        """folio_order(): log2 of the number of pages (0 for a small folio, 9 for a PMD-size THP)."""
        return self.nr.bit_length() - 1

    @property
    def special(self) -> bool:
        """The shared zero page or huge zero page: no folio the move code may touch."""
        return self.zero or self.huge_zero

    def total_mapcount(self) -> int:
        """folio_mapcount(): every PTE that maps a page of the folio, and every PMD that maps it whole."""
        return sum(self.mapcount) + self.entire_mapcount

    def page_mapcount(self, i: int) -> int:
        """page_mapcount() of page ``i``: its PTE mappings plus the PMD mappings of the folio."""
        return self.mapcount[i] + self.entire_mapcount

    def maybe_dma_pinned(self) -> bool:
        """folio_maybe_dma_pinned()."""
        return self.pincount > 0

    def refcount(self) -> int:
        """folio_ref_count(), derived: one per PTE or PMD mapping, pins, other references, the swap or
        page cache's reference."""
        held = (self.swap_entry is not None) + self.page_cache
        return self.total_mapcount() + self.pincount + self.refs + held

    def is_mapped(self) -> bool:
        return self.total_mapcount() > 0


class PhysicalMemory:
    """The frame allocator and the two zero pages; pfns are handed out in order, never reused."""

    def __init__(self) -> None:
        self.next_pfn = 0x1000
        self.zero_page = Folio(pfn=0, nr=1, data=[0], exclusive=[False], mapcount=[0],
                               anon=False, zero=True)
        self.huge_zero_page = Folio(pfn=0x200, nr=HPAGE_PMD_NR, data=[0] * HPAGE_PMD_NR,
                                    exclusive=[False] * HPAGE_PMD_NR, mapcount=[0] * HPAGE_PMD_NR,
                                    anon=False, huge_zero=True)
        self.allocated = 0          #: folios allocated so far
        self.live: dict[int, Folio] = {}  #: pfn -> folio, for folios not yet freed

    def alloc_folio(self, nr: int = 1, data: list[int] | None = None) -> Folio:
        """folio_alloc()/vma_alloc_folio(): a fresh anonymous folio, zero-filled unless ``data``."""
        if nr > 1:
            self.next_pfn = (self.next_pfn + nr - 1) // nr * nr
        pfn = self.next_pfn
        self.next_pfn += nr
        folio = Folio(pfn=pfn, nr=nr, data=list(data) if data is not None else [0] * nr,
                      exclusive=[False] * nr, mapcount=[0] * nr)
        self.allocated += 1
        self.live[pfn] = folio
        return folio

    def maybe_free(self, folio: Folio) -> bool:
        """folio_put() of the last reference: the folio goes back to the allocator."""
        if folio.special or folio.freed or folio.refcount() > 0:
            return False
        folio.freed = True
        self.live.pop(folio.pfn, None)
        return True

    def split_folio(self, folio: Folio) -> list[Folio]:
        """split_folio(): a large folio becomes small folios that keep their frames and flags."""
        parts: list[Folio] = []
        self.live.pop(folio.pfn, None)
        for i in range(folio.nr):
            small = Folio(pfn=folio.pfn + i, nr=1, data=[folio.data[i]],
                          exclusive=[folio.exclusive[i]], mapcount=[folio.mapcount[i]],
                          pincount=folio.pincount if i == 0 else 0, anon=folio.anon,
                          ksm=folio.ksm, dirty=folio.dirty)
            self.live[small.pfn] = small
            parts.append(small)
        folio.freed = True
        return parts


@dataclass
class SwapSlot:
    data: int
    count: int                  #: swap_map count: swap PTEs that reference the slot
    cache: Folio | None = None  #: the swap-cache folio, if any
    order: int = 0              #: the order of the folio written out (its slots are one aligned cluster)


@dataclass
class SwapDevice:
    """A swap device: slots hold a page's content and the number of swap PTEs that point at it."""

    slots: dict[int, SwapSlot] = field(default_factory=dict)
    next_entry: int = 1

    def alloc(self, data: int, count: int) -> int:
        """folio_alloc_swap(): a new slot for a page being written out."""
        entry = self.next_entry
        self.next_entry += 1
        self.slots[entry] = SwapSlot(data=data, count=count)
        return entry

    def alloc_aligned(self, nr: int) -> None:
        """The swap allocator gives a large folio a naturally aligned run of slots (a cluster of
        its order): the next entry is rounded up to a multiple of ``nr``."""
        self.next_entry = -(-self.next_entry // nr) * nr

    def dup(self, entry: int) -> None:
        """swap_duplicate(): one more swap PTE references the slot (fork)."""
        self.slots[entry].count += 1

    def free(self, entry: int) -> None:
        """swap_free(): one swap PTE fewer; the slot goes when nothing references it."""
        slot = self.slots[entry]
        slot.count -= 1
        if slot.count <= 0 and slot.cache is None:
            del self.slots[entry]

    def count(self, entry: int) -> int:
        """swp_swapcount()."""
        return self.slots[entry].count if entry in self.slots else 0
