"""Virtual memory areas (struct vm_area_struct) and the sorted set of them that an mm keeps."""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from .folio import PAGE_SIZE

#: the madvise/mlock flags a VMA can carry (VM_LOCKED, VM_DONTCOPY, VM_WIPEONFORK, ...)
VMA_FLAGS = ("locked", "dontfork", "wipeonfork", "mergeable", "hugepage", "nohugepage")


@dataclass
class MappedFile:
    """A file (or the shmem object behind MAP_SHARED|MAP_ANONYMOUS) and its page cache."""

    name: str
    shmem: bool = False
    cache: dict[int, Any] = field(default_factory=dict)   #: page index -> Folio


@dataclass(eq=False)
class VMA:
    """One VMA: ``[start, end)`` with its protection, kind and flags."""

    start: int
    end: int
    prot: str = "rw"                 #: a subset of "rwx", in that order
    shared: bool = False             #: VM_SHARED
    file: MappedFile | None = None   #: None for anonymous private memory
    pgoff: int = 0                   #: page offset into ``file`` of ``start``
    flags: frozenset[str] = frozenset()
    uffd_ctx: Any = None             #: the userfaultfd context it is registered with
    uffd_modes: frozenset[str] = frozenset()
    anon_vma: int | None = None      #: the anon_vma (an id) once anon_vma_prepare() has run

    @property
    def pages(self) -> int:
        return (self.end - self.start) // PAGE_SIZE

    def is_anonymous(self) -> bool:
        """vma_is_anonymous(): no vm_ops; false for files and for shared anonymous (shmem)."""
        return self.file is None

    def is_shmem(self) -> bool:
        """vma_is_shmem()."""
        return self.file is not None and self.file.shmem

    def readable(self) -> bool:
        return "r" in self.prot

    def writable(self) -> bool:
        return "w" in self.prot

    def cow_mapping(self) -> bool:
        """is_cow_mapping(): private and may be written."""
        return not self.shared and self.writable()

    def page_prot(self) -> tuple[str, bool]:
        """vm_page_prot: derived from the access bits and VM_SHARED (uffd-wp changes it only on shared VMAs)."""
        return (self.prot, self.shared)

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def pgoff_of(self, addr: int) -> int:
        """linear_page_index()."""
        return self.pgoff + (addr - self.start) // PAGE_SIZE

    def mergeable_with(self, nxt: "VMA") -> bool:
        """is_mergeable_vma() for two neighbours: same everything, contiguous file offsets."""
        if self.end != nxt.start:
            return False
        same = (self.prot, self.shared, self.file, self.flags, self.uffd_ctx, self.uffd_modes) == \
               (nxt.prot, nxt.shared, nxt.file, nxt.flags, nxt.uffd_ctx, nxt.uffd_modes)
        if not same:
            return False
        if self.anon_vma is not None and nxt.anon_vma is not None and self.anon_vma != nxt.anon_vma:
            return False                       # is_mergeable_anon_vma(): one anon_vma, or none yet
        return self.file is None or nxt.pgoff == self.pgoff + self.pages

    def anon_vma_compatible(self, nxt: "VMA") -> bool:
        """anon_vma_compatible(): neighbours that may share an anon_vma (access bits may differ)."""
        return (self.end == nxt.start and self.file is nxt.file and self.shared == nxt.shared
                and self.flags == nxt.flags and (self.uffd_ctx, self.uffd_modes) == (nxt.uffd_ctx, nxt.uffd_modes)
                and (self.file is None or nxt.pgoff == self.pgoff + self.pages))


class VmaTree:
    """The mm's VMAs, sorted by address (the maple tree, in miniature)."""

    def __init__(self) -> None:
        self.vmas: list[VMA] = []
        #: called with the address of every split (vma_adjust_trans_huge() splits a THP there)
        self.on_split: Callable[[int], None] | None = None
        self.next_anon_vma = 1
        #: anon_vmas whose chain is not singular (shared with a fork parent or child): not reusable
        self.forked_anon_vmas: set[int] = set()

    def new_anon_vma(self) -> int:
        """anon_vma_alloc()."""
        self.next_anon_vma += 1
        return self.next_anon_vma - 1

    def anon_vma_prepare(self, vma: VMA) -> int:
        """anon_vma_prepare(): give ``vma`` an anon_vma, reusing a compatible neighbour's when it can.

        find_mergeable_anon_vma() tries the next VMA, then the previous one; an anon_vma is reused
        only if the neighbour is compatible (same flags and file, adjacent) and it was never forked.
        """
        if vma.anon_vma is None:
            i = self.vmas.index(vma)
            nxt = self.vmas[i + 1] if i + 1 < len(self.vmas) else None
            prev = self.vmas[i - 1] if i > 0 else None
            for old, a, b in ((nxt, vma, nxt), (prev, prev, vma)):
                if old is not None and a is not None and b is not None and a.anon_vma_compatible(b) \
                        and old.anon_vma is not None and old.anon_vma not in self.forked_anon_vmas:
                    vma.anon_vma = old.anon_vma
                    break
            else:
                vma.anon_vma = self.new_anon_vma()
        return vma.anon_vma

    def __iter__(self) -> Iterator[VMA]:
        return iter(list(self.vmas))

    def __len__(self) -> int:
        return len(self.vmas)

    def find(self, addr: int) -> VMA | None:
        """vma_lookup(): the VMA that contains ``addr``."""
        i = bisect.bisect_right([v.start for v in self.vmas], addr) - 1
        if i >= 0 and self.vmas[i].start <= addr < self.vmas[i].end:
            return self.vmas[i]
        return None

    def overlapping(self, start: int, end: int) -> list[VMA]:
        return [v for v in self.vmas if v.start < end and start < v.end]

    def insert(self, vma: VMA) -> None:
        bisect.insort(self.vmas, vma, key=lambda v: v.start)

    def remove(self, vma: VMA) -> None:
        self.vmas.remove(vma)

    def split(self, vma: VMA, addr: int) -> tuple[VMA, VMA]:
        """split_vma(): cut ``vma`` at ``addr`` into two VMAs with the same attributes."""
        assert vma.start < addr < vma.end
        if self.on_split is not None:
            self.on_split(addr)
        tail = replace(vma, start=addr, pgoff=vma.pgoff_of(addr))
        vma.end = addr
        self.insert(tail)
        return vma, tail

    def isolate(self, start: int, end: int) -> list[VMA]:
        """The VMAs covering ``[start, end)``, split so that none sticks out of the range."""
        for v in self.overlapping(start, end):
            if v.start < start:
                self.split(v, start)
        for v in self.overlapping(start, end):
            if v.end > end:
                self.split(v, end)
        return self.overlapping(start, end)

    def merge_around(self, start: int, end: int) -> None:
        """vma_merge(): join neighbours in and around ``[start, end)`` that have become identical."""
        i = 0
        while i + 1 < len(self.vmas):
            a, b = self.vmas[i], self.vmas[i + 1]
            if b.start <= end and a.end >= start and a.mergeable_with(b):
                a.end = b.end
                a.anon_vma = a.anon_vma or b.anon_vma
                del self.vmas[i + 1]
            else:
                i += 1
