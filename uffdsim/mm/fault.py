"""Page faults (mm/memory.c): anonymous, copy-on-write, swap-in, THP, and userfaults."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .folio import HPAGE_PMD_SIZE, PAGE_SIZE, Folio
from .huge_memory import (PMD_ORDER, map_huge_zero, map_new_thp, split_huge_pmd, thp_vma_allowable,
                          thp_vma_allowable_orders, thp_vma_suitable_order)
from .machine import FaultBlocked, Segv
from .pagetable import HugePmd, MarkerPte, PresentPte, SwapPte, pmd_subpage
from .rmap import folio_add_new_anon_rmap, folio_add_rmap_pte, folio_remove_rmap_pte
from .vma import VMA

if TYPE_CHECKING:
    from .machine import MM, Machine


def userfaultfd_missing(vma: VMA) -> bool:
    """userfaultfd_missing(): the VMA is registered in MISSING mode."""
    return vma.uffd_ctx is not None and "missing" in vma.uffd_modes


def userfaultfd_wp(vma: VMA) -> bool:
    """userfaultfd_wp(): the VMA is registered in WP mode."""
    return vma.uffd_ctx is not None and "wp" in vma.uffd_modes


def handle_userfault(machine: "Machine", vma: VMA, addr: int, write: bool, wp: bool = False) -> None:
    """handle_userfault(): queue a pagefault message on the VMA's userfaultfd and put the thread to sleep.

    With UFFD_FEATURE_SIGBUS the fault is not queued: the access gets SIGBUS (reported as EFAULT).
    """
    page = addr & ~(PAGE_SIZE - 1)
    if vma.uffd_ctx.has_feature("sigbus"):
        machine.trail.enter("handle_userfault")
        raise Segv(addr, "SIGBUS: missing page in a range of a UFFD_FEATURE_SIGBUS userfaultfd")
    # userfault_msg(): the faulting address rounded down to its page, or exact with
    # UFFD_FEATURE_EXACT_ADDRESS (Linux 5.16+)
    vma.uffd_ctx.queue_pagefault(addr if vma.uffd_ctx.has_feature("exact_address") else page, write, wp)
    machine.trail.enter("handle_userfault")
    raise FaultBlocked(page, write, wp)


def check_access(vma: VMA | None, addr: int, write: bool) -> VMA:
    """The VMA checks of lock_mm_and_find_vma()/access_error(): SIGSEGV when they fail."""
    if vma is None:
        raise Segv(addr, "no mapping")
    if write and not vma.writable():
        raise Segv(addr, "write to a mapping without PROT_WRITE")
    if not write and not vma.readable():
        raise Segv(addr, "read from a mapping without PROT_READ")
    return vma


def needs_fault(mm: "MM", addr: int, write: bool) -> bool:
    """Whether the access faults: no present entry, or a write through a read-only one."""
    pmd = mm.pt.pmd(addr)
    if isinstance(pmd, HugePmd):
        return write and not pmd.write
    pte = mm.pt.get_pte(addr)
    return not isinstance(pte, PresentPte) or (write and not pte.write)


def handle_mm_fault(machine: "Machine", mm: "MM", addr: int, write: bool) -> None:
    """handle_mm_fault(): make ``addr`` accessible for a read or write, as the hardware needs.

    An access the present mapping already allows does not fault: nothing happens and nothing is
    recorded in the trail (the MMU, or GUP's follow_page(), finds the page without the kernel).
    """
    vma = check_access(mm.vmas.find(addr), addr, write)
    if not needs_fault(mm, addr, write):
        return
    machine.trail.enter("handle_mm_fault")
    pmd = mm.pt.pmd(addr)
    if pmd is None and vma.is_anonymous() and thp_vma_allowable(machine, vma, addr):
        do_huge_pmd_anonymous_page(machine, mm, vma, addr, write)
        return
    if isinstance(pmd, HugePmd):
        if not write or pmd.write:
            return
        if do_huge_pmd_wp_page(machine, mm, vma, addr):
            return
    pte = mm.pt.get_pte(addr)
    if pte is None:
        do_pte_missing(machine, mm, vma, addr, write)
    elif isinstance(pte, MarkerPte):
        if pte.kind == "guard":
            raise Segv(addr, "guard region")
        if pte.kind == "poison":
            raise Segv(addr, "poisoned page (SIGBUS)")
        do_pte_missing(machine, mm, vma, addr, write, marker=pte)
    elif isinstance(pte, SwapPte):
        do_swap_page(machine, mm, vma, addr, pte, write)
    elif write and not pte.write:
        do_wp_page(machine, mm, vma, addr, pte)


def do_pte_missing(machine: "Machine", mm: "MM", vma: VMA, addr: int, write: bool,
                   marker: MarkerPte | None = None) -> None:
    """do_pte_missing(): anonymous memory goes to do_anonymous_page(), files to do_fault()."""
    if vma.is_anonymous():
        do_anonymous_page(machine, mm, vma, addr, write)
    else:
        do_fault(machine, mm, vma, addr, write)


def do_anonymous_page(machine: "Machine", mm: "MM", vma: VMA, addr: int, write: bool) -> None:
    """do_anonymous_page(): the zero page on a read; on a write a new exclusive folio, small or (mTHP)
    large, every page of it mapped by its own writable PTE.

    The page table is allocated first (pte_alloc()), so even a fault handed to userfaultfd leaves
    one behind: a later move of a PMD-mapped THP into that PMD must split it (peer-kselftest-move-pmd-split).
    """
    machine.trail.enter("do_anonymous_page")
    mm.pt.pte_alloc(addr)
    if userfaultfd_missing(vma):
        handle_userfault(machine, vma, addr, write)
    if not write:
        mm.pt.set_pte(addr, PresentPte(machine.phys.zero_page))
        return
    order = alloc_anon_folio(machine, mm, vma, addr)
    nr = 1 << order
    folio = machine.phys.alloc_folio(nr)
    start = addr & ~((PAGE_SIZE << order) - 1)
    mm.vmas.anon_vma_prepare(vma)
    for i in range(nr):
        folio_add_new_anon_rmap(folio, i)
        mm.pt.set_pte(start + i * PAGE_SIZE, PresentPte(folio, i, write=True, dirty=True))
    if nr > 1:
        machine.trail.note(f"mTHP: a {(PAGE_SIZE << order) // 1024} KiB folio (order {order}) "
                           f"mapped by {nr} PTEs at {start:#x}")


def alloc_anon_folio(machine: "Machine", mm: "MM", vma: VMA, addr: int) -> int:
    """alloc_anon_folio() (6.8+): the order of the folio a write fault allocates.

    The highest order below the PMD's that the mTHP policy allows (thp_vma_allowable_orders()),
    whose naturally aligned range lies inside the VMA (thp_vma_suitable_order()) and has no PTE
    yet (pte_range_none(): a marker or swap entry counts as one); else the next lower such order,
    down to 0.  A VMA registered with a userfaultfd (userfaultfd_armed()) always gets order 0.
    """
    if vma.uffd_ctx is not None:
        return 0
    orders = thp_vma_allowable_orders(machine, vma, list(range(PMD_ORDER - 1, 1, -1)))
    for order in orders:
        if not thp_vma_suitable_order(vma, addr, order):
            continue
        size = PAGE_SIZE << order
        start = addr & ~(size - 1)
        if not mm.pt.entries_in(start, start + size):
            return order
    return 0


def do_fault(machine: "Machine", mm: "MM", vma: VMA, addr: int, write: bool) -> None:
    """do_fault(): map the page-cache page of a file (shmem for shared anonymous memory)."""
    machine.trail.enter("do_fault")
    if userfaultfd_missing(vma) and vma.is_shmem() and vma.pgoff_of(addr) not in vma.file.cache:
        handle_userfault(machine, vma, addr, write)
    folio = page_cache_folio(machine, vma, addr)
    if write and not vma.shared:
        wp_page_copy(machine, mm, vma, addr, folio.data[0], None)
        return
    folio_add_rmap_pte(folio, 0)
    mm.pt.set_pte(addr, PresentPte(folio, 0, write=write and vma.shared))


def page_cache_folio(machine: "Machine", vma: VMA, addr: int) -> Folio:
    """filemap_fault()/shmem_fault(): the page-cache folio for ``addr``, read in (zeros) if absent."""
    assert vma.file is not None
    index = vma.pgoff_of(addr)
    folio = vma.file.cache.get(index)
    if folio is None:
        folio = machine.phys.alloc_folio()
        folio.anon = False
        folio.page_cache = True
        vma.file.cache[index] = folio
    return folio


def do_wp_page(machine: "Machine", mm: "MM", vma: VMA, addr: int, pte: PresentPte) -> None:
    """do_wp_page(): a write to a write-protected PTE: reuse the page if exclusive, else copy it."""
    trail = machine.trail
    trail.enter("do_wp_page")
    if pte.uffd_wp and userfaultfd_wp(vma):
        handle_userfault(machine, vma, addr, True, wp=True)
    folio = pte.folio
    if folio.zero:
        trail.note("write to the zero page: wp_page_copy() allocates a new exclusive page")
        wp_page_copy(machine, mm, vma, addr, 0, pte)
        return
    if folio.anon and not folio.ksm:
        if folio.exclusive[pte.idx]:
            trail.note("page is anon-exclusive: reuse it")
            wp_reuse(pte)
            return
        if wp_can_reuse_anon_folio(machine, folio, mm):
            trail.note("wp_can_reuse_anon_folio(): only reference left, page becomes exclusive again")
            folio.exclusive[pte.idx] = True
            wp_reuse(pte)
            return
    trail.note("page shared (COW, KSM or page cache): wp_page_copy()")
    wp_page_copy(machine, mm, vma, addr, folio.data[pte.idx], pte)


def wp_can_reuse_anon_folio(machine: "Machine", folio: Folio, mm: "MM | None" = None) -> bool:
    """wp_can_reuse_anon_folio(): reuse when ours is the only reference (after dropping the swap cache)."""
    if folio.large:
        if not machine.kernel.has("large_cow_reuse"):
            return False
        return __wp_can_reuse_large_anon_folio(machine, folio, mm)
    if folio.swap_entry is not None and machine.swap.count(folio.swap_entry) == 0:
        slot = machine.swap.slots.pop(folio.swap_entry, None)
        if slot is not None:
            slot.cache = None
        folio.swap_entry = None
    return folio.refcount() == 1


def __wp_can_reuse_large_anon_folio(machine: "Machine", folio: Folio, mm: "MM | None") -> bool:
    """__wp_can_reuse_large_anon_folio() (6.15+, CONFIG_MM_ID): a PTE-mapped large folio is reused
    when every reference is a mapping and all mappings are in this one mm."""
    if folio.total_mapcount() <= 1:
        return False            # "just free up a large folio if only a single page is mapped"
    if folio.swap_entry is not None or folio.refcount() != folio.total_mapcount():
        return False
    return not folio_maybe_mapped_shared(machine, folio, mm)


def folio_maybe_mapped_shared(machine: "Machine", folio: Folio, mm: "MM | None") -> bool:
    """folio_maybe_mapped_shared(): is the folio mapped by any mm other than ``mm``?"""
    for proc in machine.live_processes():
        if proc.mm is mm:
            continue
        for table in proc.mm.pt.pmds.values():
            if isinstance(table, HugePmd):
                if table.folio is folio:
                    return True
            elif any(isinstance(pte, PresentPte) and pte.folio is folio for pte in table.ptes.values()):
                return True
def maps_folio(mm: "MM", folio: Folio) -> bool:
    """Does any PTE or PMD of this address space map a page of ``folio``?"""
    for table in mm.pt.pmds.values():
        if isinstance(table, HugePmd):
            if table.folio is folio:
                return True
        elif any(isinstance(pte, PresentPte) and pte.folio is folio for pte in table.ptes.values()):
            return True
    return False


def wp_reuse(pte: PresentPte) -> None:
    """wp_page_reuse(): make the PTE writable and dirty."""
    pte.write = True
    pte.dirty = True


def wp_page_copy(machine: "Machine", mm: "MM", vma: VMA, addr: int, value: int,
                 old: PresentPte | None) -> Folio:
    """wp_page_copy(): copy the page into a new exclusive folio and map that instead."""
    new = machine.phys.alloc_folio(data=[value])
    folio_add_new_anon_rmap(new, 0)
    mm.vmas.anon_vma_prepare(vma)
    mm.pt.set_pte(addr, PresentPte(new, 0, write=True, dirty=True))
    if old is not None:
        folio_remove_rmap_pte(machine, old.folio, old.idx)
    return new


def do_swap_page(machine: "Machine", mm: "MM", vma: VMA, addr: int, pte: SwapPte, write: bool) -> None:
    """do_swap_page(): read the page back; it is exclusive if the swap PTE said so or nobody else has it."""
    trail = machine.trail
    trail.enter("do_swap_page")
    if machine.kernel.has("mthp_swapin") and swapin_large_folio(machine, mm, vma, addr, pte, write):
        return
    slot = machine.swap.slots[pte.entry]
    folio = slot.cache
    if folio is None:
        folio = machine.phys.alloc_folio(data=[slot.data])
    # swap_cache_get_folio() (or the new folio) gives us a reference of our own: "We're already
    # holding a reference on the page but haven't mapped it yet" (6.18 mm/memory.c).  Without it
    # the last swap_free() below would free a swap-cache folio that nobody maps any more (another
    # process COW-copied away from it) while we are about to map it.
    folio.refs += 1
    machine.swap_free(pte.entry)
    still_shared = pte.entry in machine.swap.slots
    if still_shared:
        slot.cache = folio
        folio.swap_entry = pte.entry
    exclusive = not folio.ksm and (pte.exclusive or not still_shared) and not folio.is_mapped()
    folio_add_rmap_pte(folio, 0)
    folio.refs -= 1          # folio_put() of the lookup's reference: the mapping holds it now
    if exclusive:
        folio.exclusive[0] = True
        trail.note("swapped in as an exclusive page")
    else:
        trail.note("swap entry still shared: mapped read-only, not exclusive")
    mm.pt.set_pte(addr, PresentPte(folio, 0, write=exclusive and vma.writable(), dirty=write))
    if write and not exclusive:
        do_wp_page(machine, mm, vma, addr, mm.pt.get_pte(addr))  # type: ignore[arg-type]


def alloc_swap_folio(machine: "Machine", mm: "MM", vma: VMA, addr: int, pte: SwapPte) -> int:
    """alloc_swap_folio() (the skip-swapcache path of a synchronous swap device such as zram): the
    order to swap in at once - the highest the mTHP policy allows whose aligned range is all swap
    PTEs with contiguous entries, aligned like the addresses (thp_swap_suitable_orders()), each
    used once and exclusive (can_swapin_thp()); 0 for a single page.  Never in userfaultfd-armed VMAs.
    The model counts only slots written out together by a folio of at least that order: pages
    written out one by one did not come back as one folio on 6.18 (found by the mTHP fuzzer)."""
    if vma.uffd_ctx is not None:
        return 0
    for order in thp_vma_allowable_orders(machine, vma, list(range(PMD_ORDER - 1, 1, -1))):
        nr = 1 << order
        if not thp_vma_suitable_order(vma, addr, order) or (pte.entry - (addr >> 12)) % nr:
            continue
        start = addr & ~((PAGE_SIZE << order) - 1)
        first = pte.entry - ((addr - start) >> 12)
        ok = True
        for i in range(nr):
            other = mm.pt.get_pte(start + i * PAGE_SIZE)
            slot = machine.swap.slots.get(first + i)
            if (not isinstance(other, SwapPte) or other.entry != first + i or not other.exclusive
                    or slot is None or slot.count != 1 or slot.cache is not None or slot.order < order):
                ok = False
                break
        if ok:
            return order
    return 0


def swapin_large_folio(machine: "Machine", mm: "MM", vma: VMA, addr: int, pte: SwapPte, write: bool) -> bool:
    """do_swap_page() with a large folio from alloc_swap_folio(): every page of the range read back
    and mapped (exclusive, writable where the VMA is); False when a single page is swapped in."""
    order = alloc_swap_folio(machine, mm, vma, addr, pte)
    if not order:
        return False
    nr = 1 << order
    start = addr & ~((PAGE_SIZE << order) - 1)
    first = pte.entry - ((addr - start) >> 12)
    folio = machine.phys.alloc_folio(nr, data=[machine.swap.slots[first + i].data for i in range(nr)])
    for i in range(nr):
        machine.swap_free(first + i)
        folio_add_new_anon_rmap(folio, i)
        at = start + i * PAGE_SIZE
        mm.pt.set_pte(at, PresentPte(folio, i, write=vma.writable(), dirty=write and at == addr & ~(PAGE_SIZE - 1)))
    machine.trail.note(f"swapped in a {(PAGE_SIZE << order) // 1024} KiB folio (order {order}) at once")
    return True


def do_huge_pmd_anonymous_page(machine: "Machine", mm: "MM", vma: VMA, addr: int, write: bool) -> None:
    """do_huge_pmd_anonymous_page(): the huge zero page on a read, a new THP on a write."""
    machine.trail.enter("do_huge_pmd_anonymous_page")
    if userfaultfd_missing(vma):
        handle_userfault(machine, vma, addr, write)
    if not write and machine.config.thp_use_zero_page:
        map_huge_zero(machine, mm, addr)
        return
    map_new_thp(machine, mm, vma, addr)


def do_huge_pmd_wp_page(machine: "Machine", mm: "MM", vma: VMA, addr: int) -> bool:
    """do_huge_pmd_wp_page(): reuse an exclusive THP; otherwise split the PMD and fall back to PTEs."""
    machine.trail.enter("do_huge_pmd_wp_page")
    pmd = mm.pt.pmd(addr)
    assert isinstance(pmd, HugePmd)
    folio = pmd.folio
    base = addr & ~(HPAGE_PMD_SIZE - 1)
    if folio.huge_zero:
        if thp_vma_allowable(machine, vma, base) and machine.kernel.has("huge_zero_wp_thp"):
            machine.trail.note("do_huge_zero_wp_pmd(): a write to the huge zero page allocates a whole THP")
            map_new_thp(machine, mm, vma, base)
            return True
    elif folio.anon and not folio.ksm:
        if folio.exclusive[0]:
            pmd.write = pmd.dirty = True
            return True
        if folio.refcount() == 1:
            machine.trail.note("only reference left: the THP is reused and becomes exclusive again")
            folio.exclusive = [True] * folio.nr
            pmd.write = pmd.dirty = True
            return True
    split_huge_pmd(machine, mm, vma, base)
    return False
