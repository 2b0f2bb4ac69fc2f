"""Reclaim to swap (mm/vmscan.c, try_to_unmap_one) as MADV_PAGEOUT drives it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .folio import PAGE_SIZE
from .huge_memory import split_huge_pmd, split_large_folio
from .pagetable import HugePmd, PresentPte, SwapPte
from .vma import VMA

if TYPE_CHECKING:
    from .folio import Folio
    from .machine import MM, Machine


def madvise_pageout(machine: "Machine", mm: "MM", vma: VMA, start: int, end: int) -> None:
    """madvise_pageout(): reclaim the private anonymous pages of the range that only we map."""
    trail = machine.trail
    trail.enter("madvise_cold_or_pageout_pte_range")
    for addr, pmd in mm.pt.huge_pmds_in(start, end):
        if not pmd.folio.huge_zero and pmd.folio.entire_mapcount == 1 and not pmd.folio.pincount:
            split_huge_pmd(machine, mm, vma, addr)
            split_large_folio(machine, [p.mm for p in machine.live_processes()], pmd.folio)
    for addr, _ in mm.pt.entries_in(start, end):
        pte = mm.pt.get_pte(addr)               # an earlier split may have replaced it
        if not isinstance(pte, PresentPte) or pte.folio.special or not pte.folio.anon:
            continue
        folio = pte.folio
        if folio.large:
            pageout_large_folio(machine, mm, start, end, folio)
            pte = mm.pt.get_pte(addr)  # type: ignore[assignment]
            if not isinstance(pte, PresentPte) or pte.folio.special:
                continue                        # swapped out whole, or split to the zero page
            folio = pte.folio
        if folio.large or folio.total_mapcount() > 1:
            trail.note("page mapped more than once: MADV_PAGEOUT leaves it alone")
            continue
        shrink_folio(machine, mm, addr, pte)


def pageout_large_folio(machine: "Machine", mm: "MM", start: int, end: int, folio: "Folio") -> None:
    """madvise_cold_or_pageout_pte_range() for a PTE-mapped large folio (6.10+ swaps mTHP out whole):
    a folio mapped by another process is left alone (folio_maybe_mapped_shared()); one the range
    covers only in part is split first (if it can be); a whole one, mapped once, is written out
    page by page, each PTE becoming an exclusive swap entry."""
    from .fault import maps_folio
    ptes = [(a, p) for a, p in mm.pt.entries_in(start, end) if isinstance(p, PresentPte) and p.folio is folio]
    if folio.ksm or any(p.mm is not mm and maps_folio(p.mm, folio) for p in machine.live_processes()):
        return                                  # folio_maybe_mapped_shared(): left alone
    if len(ptes) < folio.nr:
        split_large_folio(machine, [p.mm for p in machine.live_processes()], folio, remap_zero=True)
        return
    if folio.total_mapcount() != folio.nr or folio.maybe_dma_pinned() or folio.refs:
        return
    if not machine.config.swap:
        return
    machine.trail.enter("try_to_unmap_one")
    machine.trail.note(f"large folio (order {folio.order}) written to swap whole: one exclusive swap entry per page")
    machine.swap.alloc_aligned(folio.nr)
    for addr, pte in ptes:
        entry = machine.swap.alloc(folio.data[pte.idx], count=1)
        machine.swap.slots[entry].order = folio.order
        mm.pt.set_pte(addr, SwapPte(entry, exclusive=folio.exclusive[pte.idx]))
        folio.mapcount[pte.idx] -= 1
    folio.exclusive = [False] * folio.nr
    machine.release_folio(folio)


def shrink_folio(machine: "Machine", mm: "MM", addr: int, pte: PresentPte) -> None:
    """shrink_folio_list() for one small folio: discard it if lazily freed, else write it to swap."""
    folio = pte.folio
    trail = machine.trail
    if folio.lazyfree and not folio.dirty:
        trail.note("MADV_FREE page, still clean: discarded")
        mm.pt.set_pte(addr, None)
        folio.mapcount[0] -= 1
        folio.exclusive[0] = False
        machine.release_folio(folio)
        return
    if not machine.config.swap:
        trail.note("no swap device: anonymous page stays")
        return
    if folio.maybe_dma_pinned():
        trail.note("try_to_unmap_one(): pinned exclusive page cannot be unmapped")
        return
    exclusive = folio.exclusive[0]
    entry = machine.swap.alloc(folio.data[0], count=1)
    mm.pt.set_pte(addr, SwapPte(entry, exclusive=exclusive))
    trail.enter("try_to_unmap_one")
    trail.note("page written to swap; the swap PTE keeps the exclusive marker"
               if exclusive else "page written to swap; swap PTE not exclusive")
    folio.mapcount[0] -= 1
    folio.exclusive[0] = False
    folio.swap_entry = None
    machine.release_folio(folio)


__all__ = ["madvise_pageout", "PAGE_SIZE"]
