"""fork() (kernel/fork.c dup_mmap, mm/memory.c copy_page_range): the child's copy of an address space."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .folio import HPAGE_PMD_SIZE
from .huge_memory import split_huge_pmd
from .pagetable import HugePmd, MarkerPte, PresentPte, SwapPte
from .rmap import folio_add_new_anon_rmap, folio_add_rmap_pmd, folio_add_rmap_pte
from .vma import VMA

if TYPE_CHECKING:
    from .machine import MM, Machine


def dup_mmap(machine: "Machine", parent: "MM", child: "MM") -> None:
    """dup_mmap(): copy every VMA except MADV_DONTFORK ones; MADV_WIPEONFORK ones start empty."""
    trail = machine.trail
    trail.enter("dup_mmap")
    for vma in parent.vmas:
        if vma.has("dontfork"):
            trail.note("MADV_DONTFORK VMA: not copied into the child")
            continue
        flags = vma.flags - {"locked"}
        new = replace(vma, flags=flags, uffd_ctx=None, uffd_modes=frozenset(), anon_vma=None)
        child.vmas.insert(new)
        if vma.has("wipeonfork"):
            trail.note("MADV_WIPEONFORK VMA: the child gets it empty")
            continue
        if vma.anon_vma is not None:
            # anon_vma_fork(): the child's anon_vma is chained to the parent's; neither is reusable now
            new.anon_vma = child.vmas.new_anon_vma()
            parent.vmas.forked_anon_vmas.add(vma.anon_vma)
            child.vmas.forked_anon_vmas.add(new.anon_vma)
        if vma_needs_copy(vma):
            copy_page_range(machine, parent, child, vma, new)
    child.mmap_cursor = parent.mmap_cursor


def vma_needs_copy(vma: VMA) -> bool:
    """vma_needs_copy(): only VMAs with anonymous pages (an anon_vma) get their page tables copied."""
    return vma.anon_vma is not None or (vma.uffd_ctx is not None and "wp" in vma.uffd_modes)


def copy_page_range(machine: "Machine", parent: "MM", child: "MM", src_vma: VMA, dst_vma: VMA) -> None:
    """copy_page_range(): copy PMDs and PTEs of one VMA into the child."""
    machine.trail.enter("copy_page_range")
    for addr, pmd in parent.pt.huge_pmds_in(src_vma.start, src_vma.end):
        copy_huge_pmd(machine, parent, child, src_vma, addr, pmd)
    for addr, pte in parent.pt.entries_in(src_vma.start, src_vma.end):
        if isinstance(pte, PresentPte):
            copy_present_pte(machine, parent, child, src_vma, dst_vma, addr, pte)
        elif isinstance(pte, SwapPte):
            copy_nonpresent_pte(machine, parent, child, addr, pte)
        elif pte.kind in ("guard", "poison"):
            child.pt.set_pte(addr, MarkerPte(pte.kind))


def copy_huge_pmd(machine: "Machine", parent: "MM", child: "MM", vma: VMA, addr: int, pmd: HugePmd) -> None:
    """copy_huge_pmd(): share the THP (no longer exclusive), or split it when it may be pinned."""
    folio = pmd.folio
    if folio.huge_zero:
        child.pt.set_pmd(addr, HugePmd(folio))
        return
    if folio.maybe_dma_pinned():
        machine.trail.note("pinned THP: split so the child gets its own copies")
        split_huge_pmd(machine, parent, vma, addr)
        return
    folio_add_rmap_pmd(folio)
    folio.exclusive = [False] * folio.nr
    pmd.write = False
    child.pt.set_pmd(addr, HugePmd(folio, write=False, dirty=pmd.dirty))


def copy_present_pte(machine: "Machine", parent: "MM", child: "MM", src_vma: VMA, dst_vma: VMA,
                     addr: int, pte: PresentPte) -> None:
    """copy_present_pte(): share the page copy-on-write; a maybe-pinned exclusive page is copied instead."""
    folio = pte.folio
    if folio.zero:
        child.pt.set_pte(addr, PresentPte(folio))
        return
    if folio.anon and folio.exclusive[pte.idx] and folio.maybe_dma_pinned() and src_vma.cow_mapping():
        copy_present_page(machine, child, dst_vma, addr, folio.data[pte.idx])
        return
    folio_add_rmap_pte(folio, pte.idx)
    if folio.anon:
        if folio.exclusive[pte.idx]:
            machine.trail.note("folio_try_dup_anon_rmap_pte(): page COW-shared, anon-exclusive cleared")
        folio.exclusive[pte.idx] = False
    write = pte.write
    if src_vma.cow_mapping():
        pte.write = write = False
    child.pt.set_pte(addr, PresentPte(folio, pte.idx, write=write, dirty=pte.dirty))


def copy_present_page(machine: "Machine", child: "MM", dst_vma: VMA, addr: int, value: int) -> None:
    """copy_present_page(): the child gets its own copy of a page that may be DMA-pinned."""
    machine.trail.note("copy_present_page(): pinned page copied for the child, parent keeps it exclusive")
    new = machine.phys.alloc_folio(data=[value])
    folio_add_new_anon_rmap(new, 0)
    child.pt.set_pte(addr, PresentPte(new, 0, write=dst_vma.writable(), dirty=True))


def copy_nonpresent_pte(machine: "Machine", parent: "MM", child: "MM", addr: int, pte: SwapPte) -> None:
    """copy_nonpresent_pte(): both now reference the swap slot, and the parent's entry loses its exclusive bit."""
    machine.swap.dup(pte.entry)
    pte.exclusive = False
    child.pt.set_pte(addr, SwapPte(pte.entry, exclusive=False))


__all__ = ["dup_mmap", "HPAGE_PMD_SIZE"]
