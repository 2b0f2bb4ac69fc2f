"""KSM (mm/ksm.c): merge identical pages of MADV_MERGEABLE areas into one shared, read-only page."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .folio import Folio
from .pagetable import PresentPte
from .rmap import folio_remove_rmap_pte

if TYPE_CHECKING:
    from .machine import Machine


def ksm_scan(machine: "Machine") -> int:
    """ksm_do_scan() until nothing changes: returns the number of PTEs newly pointed at KSM pages.

    Pages are scanned in process-creation order, by address.  A page identical to a stable KSM
    page is merged into it; two identical unstable pages merge with the later one becoming the
    KSM page (try_to_merge_two_pages()).  Pinned pages, PMD-mapped THPs and the zero page are
    skipped; a page of a PTE-mapped large folio (mTHP) is merged after its folio is split
    (try_to_merge_one_page()), also when the identical page is in the same folio.
    """
    trail = machine.trail
    trail.enter("ksm_do_scan")
    unstable: dict[int, tuple[object, int, Folio]] = {}
    merged = 0
    for proc in machine.live_processes():
        mm = proc.mm
        for vma in mm.vmas:
            if not vma.has("mergeable") or not vma.is_anonymous() or vma.shared:
                continue
            for addr, _ in mm.pt.entries_in(vma.start, vma.end):
                pte = mm.pt.get_pte(addr)       # an earlier merge may have split this page's folio
                if not isinstance(pte, PresentPte) or pte.folio.special:
                    continue
                folio = pte.folio
                if folio.ksm or folio.maybe_dma_pinned() or not folio.anon:
                    continue
                value = folio.data[pte.idx]
                if machine.config.ksm_use_zero_pages and value == 0:
                    pte = split_for_merge(machine, mm, addr, pte)
                    if pte is not None:
                        replace_page(machine, mm, addr, pte, machine.phys.zero_page)
                        merged += 1
                    continue
                kpage = machine.ksm_stable.get(value)
                if kpage is not None:
                    pte = split_for_merge(machine, mm, addr, pte)
                    if pte is not None:
                        merged += replace_page(machine, mm, addr, pte, kpage)
                    continue
                other = unstable.get(value)
                if other is None or (other[0] is mm and other[1] == addr):
                    unstable[value] = (mm, addr, folio)
                    continue
                omm, oaddr, _ = other
                opte = omm.pt.get_pte(oaddr)    # type: ignore[attr-defined]
                if isinstance(opte, PresentPte) and opte.folio.large:
                    opte = split_for_merge(machine, omm, oaddr, opte)
                pte = split_for_merge(machine, mm, addr, pte)
                if pte is None:
                    continue
                folio = pte.folio
                make_ksm_page(machine, folio)
                merged += 1
                opte = omm.pt.get_pte(oaddr)    # type: ignore[attr-defined]
                if isinstance(opte, PresentPte) and not opte.folio.large and opte.folio is not folio:
                    merged += replace_page(machine, omm, oaddr, opte, folio)
                del unstable[value]
    trail.note(f"KSM merged {merged} mappings" if merged else "KSM found nothing to merge")
    return merged


def split_for_merge(machine: "Machine", mm: object, addr: int, pte: PresentPte) -> PresentPte | None:
    """try_to_merge_one_page(): a large folio is split before one of its pages is merged
    (None when the split is refused); the page's PTE after that."""
    if not pte.folio.large:
        return pte
    from .huge_memory import split_large_folio
    if split_large_folio(machine, [p.mm for p in machine.live_processes()], pte.folio, remap_zero=True) is None:
        return None
    new = mm.pt.get_pte(addr)  # type: ignore[attr-defined]
    return new if isinstance(new, PresentPte) and not new.folio.zero else None


def make_ksm_page(machine: "Machine", folio: Folio) -> None:
    """try_to_merge_one_page() with no KSM page yet: this folio becomes the KSM page."""
    folio.ksm = True
    folio.exclusive[0] = False
    machine.ksm_stable[folio.data[0]] = folio
    for proc in machine.live_processes():
        for _, pte in proc.mm.pt.entries_in(0, 1 << 48):
            if isinstance(pte, PresentPte) and pte.folio is folio:
                pte.write = False


def replace_page(machine: "Machine", mm: object, addr: int, pte: PresentPte, kpage: Folio) -> int:
    """replace_page(): point the PTE at the KSM page (read-only) and drop the old page."""
    old = pte.folio
    if not kpage.zero:
        kpage.mapcount[0] += 1
    mm.pt.set_pte(addr, PresentPte(kpage, 0, write=False, dirty=pte.dirty))  # type: ignore[attr-defined]
    folio_remove_rmap_pte(machine, old, pte.idx)
    return 1
