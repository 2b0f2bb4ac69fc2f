"""Transparent huge pages (mm/huge_memory.c): PMD faults, splitting, and moving a whole PMD."""
from __future__ import annotations

from .. import lerrno as E  # Linux's numbers, not the host's
from typing import TYPE_CHECKING

from .folio import HPAGE_PMD_NR, HPAGE_PMD_SIZE, PAGE_SIZE, Folio
from .pagetable import HugePmd, PresentPte, PteTable
from .rmap import folio_add_new_anon_rmap
from .vma import VMA

if TYPE_CHECKING:
    from .machine import MM, Machine


PMD_ORDER = 9


def thp_vma_allowable_orders(machine: "Machine", vma: VMA, orders: list[int]) -> list[int]:
    """__thp_vma_allowable_orders() for anonymous memory (6.8+): the orders of ``orders`` the sysfs
    policy allows in this VMA.

    Per size, ``hugepages-<size>kB/enabled``: ``always``; ``madvise`` (VM_HUGEPAGE only);
    ``inherit`` (as the top-level ``enabled``: always, or madvise with VM_HUGEPAGE); ``never``.
    MADV_NOHUGEPAGE, shared and file mappings allow none.
    """
    if vma.has("nohugepage") or not vma.is_anonymous() or vma.shared:
        return []
    top, madvised = machine.config.thp, vma.has("hugepage")
    allowed = []
    for order in orders:
        policy = machine.config.mthp.get((PAGE_SIZE << order) // 1024, "never")
        if (policy == "always" or (policy == "madvise" and madvised)
                or (policy == "inherit" and (top == "always" or (top == "madvise" and madvised)))):
            allowed.append(order)
    return allowed


def thp_vma_suitable_order(vma: VMA, addr: int, order: int) -> bool:
    """thp_vma_suitable_order(): the naturally aligned range of that order around ``addr`` lies inside the VMA."""
    size = PAGE_SIZE << order
    start = addr & ~(size - 1)
    return vma.start <= start and start + size <= vma.end


def thp_vma_allowable(machine: "Machine", vma: VMA, addr: int) -> bool:
    """thp_vma_allowable_order(PMD_ORDER) and thp_vma_suitable_order(): may a fault map a PMD-size THP here?"""
    return (bool(thp_vma_allowable_orders(machine, vma, [PMD_ORDER]))
            and thp_vma_suitable_order(vma, addr, PMD_ORDER))


def map_huge_zero(machine: "Machine", mm: "MM", addr: int) -> None:
    """set_huge_zero_folio(): map the huge zero page read-only at the PMD."""
    mm.pt.set_pmd(addr, HugePmd(machine.phys.huge_zero_page))


def map_new_thp(machine: "Machine", mm: "MM", vma: VMA, addr: int) -> Folio:
    """__do_huge_pmd_anonymous_page(): a fresh exclusive THP, mapped by one writable PMD."""
    folio = machine.phys.alloc_folio(HPAGE_PMD_NR)
    folio_add_new_anon_rmap(folio, None)
    mm.pt.set_pmd(addr, HugePmd(folio, write=vma.writable(), dirty=True))
    mm.vmas.anon_vma_prepare(vma)
    return folio


def split_huge_pmd(machine: "Machine", mm: "MM", vma: VMA, addr: int) -> None:
    """__split_huge_pmd(): replace a huge PMD by a PTE table that maps the same pages.

    The folio stays large (PTE-mapped); each PTE inherits the PMD's write bit and each page
    keeps its PageAnonExclusive flag.  The huge zero page becomes 512 zero-page PTEs.
    """
    pmd = mm.pt.pmd(addr)
    assert isinstance(pmd, HugePmd)
    base = addr & ~(HPAGE_PMD_SIZE - 1)
    folio = pmd.folio
    table = PteTable()
    if folio.huge_zero:
        zero = machine.phys.zero_page
        for i in range(HPAGE_PMD_NR):
            table.ptes[(base >> 12) + i] = PresentPte(zero)
    else:
        for i in range(HPAGE_PMD_NR):
            table.ptes[(base >> 12) + i] = PresentPte(folio, i, write=pmd.write, dirty=pmd.dirty)
            folio.mapcount[i] += 1
        folio.entire_mapcount -= 1
    mm.pt.pmds[base >> 21] = table


def split_huge_pmd_address(machine: "Machine", mm: "MM", addr: int) -> None:
    """vma_adjust_trans_huge(): a VMA boundary inside a PMD-mapped THP splits the PMD there."""
    if not huge_pmd_aligned(addr) and isinstance(mm.pt.pmd(addr), HugePmd):
        vma = mm.vmas.find(addr)
        assert vma is not None
        machine.trail.note("VMA split inside a THP: the PMD is split")
        split_huge_pmd(machine, mm, vma, addr & ~(HPAGE_PMD_SIZE - 1))


def split_large_folio(machine: "Machine", mm_list: list["MM"], folio: Folio,
                      remap_zero: bool = False) -> list[Folio] | None:
    """split_folio(): cut a PTE-mapped large folio into small ones; ``None`` if it cannot be split.

    Splitting needs every mapping to be a PTE mapping and no reference but the mappings' (the
    kernel's can_split_folio(): a pin or an ordinary reference, such as a page spliced into a
    pipe, refuses it).  Every PTE that mapped a page of the folio is pointed at the new folio.
    """
    if folio.entire_mapcount or folio.pincount or folio.refs:
        return None
    parts = machine.phys.split_folio(folio)
    for mm in mm_list:
        for table in mm.pt.pmds.values():
            if isinstance(table, PteTable):
                for vpn, pte in table.ptes.items():
                    if isinstance(pte, PresentPte) and pte.folio is folio:
                        part = parts[pte.idx]
                        if remap_zero and try_to_map_unused_to_zeropage(machine, mm, vpn, part):
                            table.ptes[vpn] = PresentPte(machine.phys.zero_page, 0, uffd_wp=pte.uffd_wp)
                            continue
                        table.ptes[vpn] = PresentPte(part, 0, pte.write, pte.dirty,
                                                     pte.soft_dirty, pte.uffd_wp)
    for part in parts:
        machine.release_folio(part)
    return parts


def try_to_map_unused_to_zeropage(machine: "Machine", mm: "MM", vpn: int, part: Folio) -> bool:
    """try_to_map_unused_to_zeropage() (6.12+, b1f202060afe "mm: remap unused subpages to shared
    zeropage when splitting isolated thp"): a zero-filled anonymous subpage
    of a split THP is mapped to the shared zero page instead (not in mlocked VMAs)."""
    if not machine.kernel.has("split_zero_remap") or not part.anon or part.ksm or any(part.data):
        return False
    vma = mm.vmas.find(vpn << 12)
    if vma is None or vma.has("locked"):
        return False
    machine.trail.note(f"split: zero-filled subpage at {vpn << 12:#x} remapped to the shared zero page")
    return True


def huge_pmd_aligned(addr: int) -> bool:
    return addr & (HPAGE_PMD_SIZE - 1) == 0


def move_splits_huge_pmd(dst_addr: int, src_addr: int, src_end: int) -> bool:
    """move_splits_huge_pmd(): a whole-PMD move needs both addresses aligned and a PMD of length."""
    return (not huge_pmd_aligned(src_addr) or not huge_pmd_aligned(dst_addr)
            or src_end - src_addr < HPAGE_PMD_SIZE)


def move_pages_huge_pmd(machine: "Machine", mm: "MM", dst_vma: VMA, src_vma: VMA,
                        dst_addr: int, src_addr: int) -> int:
    """move_pages_huge_pmd(): move a whole PMD-mapped THP (or the huge zero page); 0 or -errno."""
    trail = machine.trail
    trail.enter("move_pages_huge_pmd")
    src_pmd = mm.pt.pmd(src_addr)
    if mm.pt.pmd(dst_addr) is not None or not huge_pmd_aligned(src_addr) or not huge_pmd_aligned(dst_addr):
        trail.end("sanity check: destination PMD not none or address unaligned -> EINVAL")
        return -E.EINVAL
    if not isinstance(src_pmd, HugePmd):
        trail.end("source PMD is not a huge PMD any more -> ENOENT")
        return -E.ENOENT
    folio = src_pmd.folio
    if not folio.huge_zero:
        if not folio.exclusive[0]:
            trail.end("THP not anon-exclusive -> EBUSY")
            return -E.EBUSY
        if folio.maybe_dma_pinned():
            trail.end("THP maybe DMA-pinned -> EBUSY")
            return -E.EBUSY
    mm.pt.set_pmd(src_addr, None)
    if folio.huge_zero:
        new = HugePmd(folio)
        trail.note("huge zero page: the destination PMD keeps the special huge-zero mapping")
    else:
        new = HugePmd(folio, write=True, dirty=True)
        trail.note("folio_move_anon_rmap(): the THP now belongs to the destination VMA")
    mm.pt.set_pmd(dst_addr, new)
    trail.note(f"moved one PMD ({HPAGE_PMD_SIZE // PAGE_SIZE} pages) without splitting")
    return 0
