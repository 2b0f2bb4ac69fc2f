"""madvise() (mm/madvise.c): the advices of the scenario format."""
from __future__ import annotations

from .. import lerrno as E  # Linux's numbers, not the host's
from typing import TYPE_CHECKING

from ..errors import UffdError
from .fault import handle_mm_fault
from .folio import HPAGE_PMD_NR, HPAGE_PMD_SIZE, PAGE_SIZE
from .huge_memory import split_huge_pmd, split_large_folio
from .pagetable import HugePmd, MarkerPte, PresentPte, PteTable, SwapPte
from .rmap import folio_add_new_anon_rmap, zap_huge_pmd, zap_pte
from .swap import madvise_pageout
from .vma import VMA

if TYPE_CHECKING:
    from .machine import MM, Machine

#: advices that only set or clear a VMA flag: advice -> (flag to set, flag to clear)
FLAG_ADVICE: dict[str, tuple[str | None, str | None]] = {
    "dontfork": ("dontfork", None), "dofork": (None, "dontfork"),
    "wipeonfork": ("wipeonfork", None), "keeponfork": (None, "wipeonfork"),
    "mergeable": ("mergeable", None), "unmergeable": (None, "mergeable"),
    "hugepage": ("hugepage", "nohugepage"), "nohugepage": ("nohugepage", "hugepage"),
}
ADVICES = tuple(FLAG_ADVICE) + ("dontneed", "free", "pageout", "collapse", "guard_install", "guard_remove",
                                 "populate_write")


def zap_page_range(machine: "Machine", mm: "MM", vma: VMA, start: int, end: int, *,
                   drop_markers: bool = False) -> None:
    """zap_page_range_single(): unmap every page of the range; a partly covered THP is split first."""
    machine.trail.enter("zap_page_range_single")
    for addr, pmd in mm.pt.huge_pmds_in(start, end):
        if start <= addr and addr + HPAGE_PMD_SIZE <= end:
            mm.pt.set_pmd(addr, None)
            zap_huge_pmd(machine, pmd)
        else:
            split_huge_pmd(machine, mm, vma, addr)
    for addr, pte in mm.pt.entries_in(start, end):
        if isinstance(pte, MarkerPte) and not drop_markers:
            continue
        mm.pt.set_pte(addr, None)
        zap_pte(machine, pte)


def reclaim_pt(machine: "Machine", mm: "MM", start: int, end: int) -> None:
    """try_get_and_clear_pmd() (CONFIG_PT_RECLAIM, 6.14+, 6375e95f381e): a MADV_DONTNEED zap that
    covered a whole page table and left it empty frees it (the PMD becomes none)."""
    first = -(-start // HPAGE_PMD_SIZE) * HPAGE_PMD_SIZE
    for base in range(first, end - HPAGE_PMD_SIZE + 1, HPAGE_PMD_SIZE):
        table = mm.pt.pmd(base)
        if isinstance(table, PteTable) and not table.ptes:
            mm.pt.set_pmd(base, None)
            machine.trail.note(f"CONFIG_PT_RECLAIM: empty page table at {base:#x} freed")


def flags_unchanged(vmas: list[VMA], advice: str) -> bool:
    """Would a flag advice leave every one of these VMAs' flags as they are (madvise_update_vma() no-op)?"""
    set_flag, clear_flag = FLAG_ADVICE[advice]
    return bool(vmas) and all((set_flag is None or vma.has(set_flag)) and (clear_flag is None or not vma.has(clear_flag))
                              for vma in vmas)


def madvise_vma(machine: "Machine", proc: object, vma: VMA, start: int, end: int, advice: str) -> None:
    """madvise_vma_behavior(): apply one advice to the part ``[start, end)`` of one VMA."""
    mm: "MM" = proc.mm  # type: ignore[attr-defined]
    trail = machine.trail
    if advice in FLAG_ADVICE:
        if advice == "wipeonfork" and (vma.shared or not vma.is_anonymous()):
            raise UffdError(E.EINVAL, "MADV_WIPEONFORK needs private anonymous memory")
        set_flag, clear_flag = FLAG_ADVICE[advice]
        if advice == "unmergeable":
            break_ksm(machine, mm, start, end)
        flags = set(vma.flags)
        if set_flag:
            flags.add(set_flag)
        if clear_flag:
            flags.discard(clear_flag)
        vma.flags = frozenset(flags)
        trail.note(f"VMA flags now {sorted(vma.flags)}")
        return
    if advice in ("dontneed", "free", "pageout") and vma.has("locked"):
        raise UffdError(E.EINVAL, f"MADV_{advice.upper()} on an mlocked VMA")
    if advice == "dontneed":
        zap_page_range(machine, mm, vma, start, end)
        if machine.kernel.pt_reclaim:
            reclaim_pt(machine, mm, start, end)
    elif advice == "free":
        madvise_free(machine, mm, vma, start, end)
    elif advice == "pageout":
        madvise_pageout(machine, mm, vma, start, end)
    elif advice == "collapse":
        madvise_collapse(machine, mm, vma, start, end)
    elif advice in ("guard_install", "guard_remove") and not machine.kernel.has("guard_install"):
        raise UffdError(E.EINVAL, f"MADV_{advice.upper()} is unknown before Linux 6.13")
    elif advice == "guard_install":
        if vma.has("locked"):
            raise UffdError(E.EINVAL, "MADV_GUARD_INSTALL on an mlocked VMA")
        zap_page_range(machine, mm, vma, start, end)
        mm.vmas.anon_vma_prepare(vma)     # so that fork copies the markers
        for addr in range(start, end, PAGE_SIZE):
            mm.pt.set_pte(addr, MarkerPte("guard"))
        trail.note("guard markers installed")
    elif advice == "guard_remove":
        for addr, pte in mm.pt.entries_in(start, end):
            if isinstance(pte, MarkerPte) and pte.kind == "guard":
                mm.pt.set_pte(addr, None)
    else:
        raise UffdError(E.EINVAL, f"unknown advice {advice!r}")


def madvise_free(machine: "Machine", mm: "MM", vma: VMA, start: int, end: int) -> None:
    """madvise_free_pte_range(): clean exclusive pages become lazily freeable; swap entries are dropped."""
    machine.trail.enter("madvise_free_pte_range")
    if not vma.is_anonymous():
        raise UffdError(E.EINVAL, "MADV_FREE needs anonymous memory")
    for addr, pmd in mm.pt.huge_pmds_in(start, end):
        split_huge_pmd(machine, mm, vma, addr)
    for addr, pte in mm.pt.entries_in(start, end):
        if isinstance(pte, SwapPte):
            mm.pt.set_pte(addr, None)
            machine.swap_free(pte.entry)
        elif isinstance(pte, PresentPte) and pte.folio.anon and not pte.folio.special:
            if pte.folio.large and not folio_covered(mm, pte.folio, start, end):
                from .fault import maps_folio
                if any(p.mm is not mm and maps_folio(p.mm, pte.folio) for p in machine.live_processes()):
                    continue                    # folio_maybe_mapped_shared(): neither split nor freed
                split_large_folio(machine, [p.mm for p in machine.live_processes()], pte.folio, remap_zero=True)
                pte = mm.pt.get_pte(addr)  # type: ignore[assignment]
            elif pte.folio.large:
                # madvise_folio_pte_batch() covers the whole folio: it stays large, lazily freed
                if pte.folio.total_mapcount() == pte.folio.nr and not pte.folio.ksm:
                    pte.folio.lazyfree = True
                    pte.folio.dirty = pte.dirty = False
                continue
            if isinstance(pte, PresentPte) and pte.folio.total_mapcount() == 1 and not pte.folio.ksm:
                pte.folio.lazyfree = True
                pte.folio.dirty = pte.dirty = False


def folio_covered(mm: "MM", folio: object, start: int, end: int) -> bool:
    """Does [start, end) map every page of the (PTE-mapped) folio, in this mm?"""
    n = sum(1 for _, pte in mm.pt.entries_in(start, end) if isinstance(pte, PresentPte) and pte.folio is folio)
    return n == folio.nr  # type: ignore[attr-defined]


def break_ksm(machine: "Machine", mm: "MM", start: int, end: int) -> None:
    """break_ksm(): write-fault every KSM page of the range so that it gets its own copy back."""
    for addr, pte in mm.pt.entries_in(start, end):
        if isinstance(pte, PresentPte) and pte.folio.ksm:
            from .fault import do_wp_page
            do_wp_page(machine, mm, mm.vmas.find(addr), addr, pte)  # type: ignore[arg-type]


def madvise_collapse(machine: "Machine", mm: "MM", vma: VMA, start: int, end: int) -> None:
    """madvise_collapse(): copy each aligned 2 MiB part of the range into a new THP."""
    trail = machine.trail
    trail.enter("madvise_collapse")
    if not vma.is_anonymous() or vma.has("nohugepage"):
        raise UffdError(E.EINVAL, "MADV_COLLAPSE needs anonymous memory without MADV_NOHUGEPAGE")
    first = (start + HPAGE_PMD_SIZE - 1) & ~(HPAGE_PMD_SIZE - 1)
    collapsed = False
    for base in range(first, end - HPAGE_PMD_SIZE + 1, HPAGE_PMD_SIZE):
        if base < vma.start or base + HPAGE_PMD_SIZE > vma.end:
            continue
        if isinstance(mm.pt.pmd(base), HugePmd):
            collapsed = True
            continue
        for addr, pte in mm.pt.entries_in(base, base + HPAGE_PMD_SIZE):
            if isinstance(pte, SwapPte):
                handle_mm_fault(machine, mm, addr, False)
            elif isinstance(pte, MarkerPte) or (isinstance(pte, PresentPte) and pte.folio.maybe_dma_pinned()):
                raise UffdError(E.EINVAL, "MADV_COLLAPSE: a page of the range cannot be collapsed")
        if vma.uffd_ctx is not None:
            # hpage_collapse_scan_pmd(): in a userfaultfd-armed VMA an empty (or zero-page) entry
            # ends the scan with SCAN_EXCEED_NONE_PTE, which madvise_collapse_errno() makes EBUSY
            present = {addr for addr, pte in mm.pt.entries_in(base, base + HPAGE_PMD_SIZE)
                       if isinstance(pte, PresentPte) and not pte.folio.zero}
            if len(present) < HPAGE_PMD_NR:
                trail.end("userfaultfd-armed range with an empty page: SCAN_EXCEED_NONE_PTE -> EBUSY")
                raise UffdError(E.EBUSY, "MADV_COLLAPSE: a registered range has an empty page")
        table = mm.pt.pmd(base)
        data = [0] * HPAGE_PMD_NR
        if isinstance(table, PteTable):
            for addr, pte in mm.pt.entries_in(base, base + HPAGE_PMD_SIZE):
                assert isinstance(pte, PresentPte)
                data[(addr - base) // PAGE_SIZE] = pte.folio.data[pte.idx]
        folio = machine.phys.alloc_folio(HPAGE_PMD_NR, data)
        for addr, pte in mm.pt.entries_in(base, base + HPAGE_PMD_SIZE):
            mm.pt.set_pte(addr, None)
            zap_pte(machine, pte)
        mm.pt.pmds.pop(base >> 21, None)
        folio_add_new_anon_rmap(folio, None)
        mm.pt.set_pmd(base, HugePmd(folio, write=vma.writable(), dirty=True))
        mm.vmas.anon_vma_prepare(vma)
        trail.note("collapse_huge_page(): pages copied into a new THP")
        collapsed = True
    if not collapsed:
        raise UffdError(E.EINVAL, "MADV_COLLAPSE: no aligned 2 MiB range inside the VMA")


def madvise_populate(machine: "Machine", mm: "MM", start: int, end: int) -> None:
    """madvise_populate() for MADV_POPULATE_WRITE (5.14+): write-fault each page in order, changing no data.

    Like GUP with FOLL_WRITE, it stops at the first page it cannot fault: no VMA (ENOMEM), a VMA
    it may not write (EINVAL: "incompatible mappings / permissions"), or a fault that would give
    SIGSEGV or SIGBUS (EFAULT).  A present writable page is left as it is; a read-only one takes
    the write fault of do_wp_page() (reuse, or a copy while it is shared)."""
    machine.trail.enter("madvise_populate")
    for addr in range(start, end, PAGE_SIZE):
        vma = mm.vmas.find(addr)
        if vma is None:
            raise UffdError(E.ENOMEM, f"no VMA at {addr:#x}")
        if not vma.writable():
            raise UffdError(E.EINVAL, "MADV_POPULATE_WRITE on a mapping without PROT_WRITE")
        handle_mm_fault(machine, mm, addr, True)
