"""Page tables: PTEs (none, present, swap, marker) in PTE tables, and PMDs that map a THP."""
from __future__ import annotations

from dataclasses import dataclass, field

from .folio import HPAGE_PMD_NR, PAGE_SHIFT, Folio

PMD_SHIFT = PAGE_SHIFT + 9
PUD_SHIFT = PMD_SHIFT + 9


@dataclass(slots=True)
class PresentPte:
    """A present PTE: page ``idx`` of ``folio`` (the zero page is a present, special PTE)."""

    folio: Folio
    idx: int = 0
    write: bool = False
    dirty: bool = False
    soft_dirty: bool = False
    uffd_wp: bool = False

    @property
    def pfn(self) -> int:
        return self.folio.pfn + self.idx


@dataclass(slots=True)
class SwapPte:
    """A swap PTE: the slot ``entry`` on the swap device, with the exclusive marker."""

    entry: int
    exclusive: bool = False
    uffd_wp: bool = False


@dataclass(slots=True)
class MarkerPte:
    """A PTE marker: ``guard`` (MADV_GUARD_INSTALL), ``poison`` or ``uffd_wp``."""

    kind: str


Pte = PresentPte | SwapPte | MarkerPte | None


@dataclass(slots=True)
class HugePmd:
    """A PMD that maps a whole PMD-size folio (a THP or the huge zero page)."""

    folio: Folio
    write: bool = False
    dirty: bool = False


@dataclass(slots=True)
class PteTable:
    """A PTE table covering one PMD (512 pages); missing keys are ``pte_none``."""

    ptes: dict[int, PresentPte | SwapPte | MarkerPte] = field(default_factory=dict)


Pmd = PteTable | HugePmd | None


class PageTables:
    """One address space's page tables: PMD index -> PTE table or huge PMD; allocated PUDs."""

    def __init__(self) -> None:
        self.pmds: dict[int, PteTable | HugePmd] = {}
        self.puds: set[int] = set()

    # -- lookups -------------------------------------------------------------------------
    @staticmethod
    def pmd_index(addr: int) -> int:
        return addr >> PMD_SHIFT

    def mm_find_pmd(self, addr: int) -> bool:
        """mm_find_pmd(): is there a PMD level (an allocated PUD entry) for ``addr``?"""
        return (addr >> PUD_SHIFT) in self.puds

    def mm_alloc_pmd(self, addr: int) -> None:
        """mm_alloc_pmd(): allocate the upper levels down to the PMD for ``addr``."""
        self.puds.add(addr >> PUD_SHIFT)

    def pmd(self, addr: int) -> Pmd:
        return self.pmds.get(addr >> PMD_SHIFT)

    def pte_alloc(self, addr: int) -> PteTable:
        """pte_alloc(): the PTE table for ``addr``, allocated if the PMD is none."""
        self.mm_alloc_pmd(addr)
        idx = addr >> PMD_SHIFT
        table = self.pmds.get(idx)
        if table is None:
            table = PteTable()
            self.pmds[idx] = table
        assert isinstance(table, PteTable)
        return table

    def get_pte(self, addr: int) -> Pte:
        """ptep_get() for ``addr``; ``None`` when there is no table or the entry is none."""
        table = self.pmds.get(addr >> PMD_SHIFT)
        if isinstance(table, PteTable):
            return table.ptes.get(addr >> PAGE_SHIFT)
        return None

    def set_pte(self, addr: int, pte: Pte) -> None:
        """set_pte_at() / pte_clear(): ``None`` clears the entry."""
        table = self.pte_alloc(addr)
        vpn = addr >> PAGE_SHIFT
        if pte is None:
            table.ptes.pop(vpn, None)
        else:
            table.ptes[vpn] = pte

    def set_pmd(self, addr: int, pmd: HugePmd | None) -> None:
        """set_pmd_at() / pmd_clear()."""
        idx = addr >> PMD_SHIFT
        if pmd is None:
            self.pmds.pop(idx, None)
        else:
            self.puds.add(addr >> PUD_SHIFT)
            self.pmds[idx] = pmd

    def entries_in(self, start: int, end: int) -> list[tuple[int, PresentPte | SwapPte | MarkerPte]]:
        """Every non-none PTE in ``[start, end)``, by address (huge PMDs not included)."""
        out: list[tuple[int, PresentPte | SwapPte | MarkerPte]] = []
        first, last = start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT
        lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        for idx in self._indexes(first, last):
            table = self.pmds[idx]
            if isinstance(table, PteTable):
                ptes = table.ptes
                if hi - lo < len(ptes):           # a walk costs the smaller of its span and the table
                    vpns = [v for v in range(max(lo, idx << 9), min(hi, (idx + 1) << 9)) if v in ptes]
                else:
                    vpns = sorted(v for v in ptes if lo <= v < hi)
                out.extend((vpn << PAGE_SHIFT, ptes[vpn]) for vpn in vpns)
        return out

    def huge_pmds_in(self, start: int, end: int) -> list[tuple[int, HugePmd]]:
        """Every huge PMD that overlaps ``[start, end)``, by address."""
        first, last = start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT
        return [(idx << PMD_SHIFT, pmd) for idx in self._indexes(first, last)
                if isinstance(pmd := self.pmds[idx], HugePmd)]

    def _indexes(self, first: int, last: int) -> list[int]:
        """The PMD indexes in ``first..last`` that hold a table or a huge PMD, ascending.

        Costs the smaller of the span and the number of tables (a walk over one small VMA must not
        cost every table of the process: issue 19, fork and KSM of many regions)."""
        if last - first < len(self.pmds):
            return [k for k in range(first, last + 1) if k in self.pmds]
        return sorted(k for k in self.pmds if first <= k <= last)

    def free_pgtables(self, start: int, end: int) -> None:
        """free_pgtables(): drop PTE tables that lie wholly inside ``[start, end)`` (munmap)."""
        for idx in [k for k in self.pmds if start <= (k << PMD_SHIFT) and ((k + 1) << PMD_SHIFT) <= end]:
            table = self.pmds[idx]
            if isinstance(table, PteTable) and not table.ptes:
                del self.pmds[idx]


def pmd_subpage(addr: int) -> int:
    """The index of ``addr``'s page inside its PMD."""
    return (addr >> PAGE_SHIFT) & (HPAGE_PMD_NR - 1)
