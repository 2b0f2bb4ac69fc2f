"""UFFDIO_MOVE's core (mm/userfaultfd.c): move_pages() and the helpers it dispatches to.

Each function mirrors the kernel function of the same name, in the kernel's order of checks, so
that the errno a caller sees is the one the kernel returns when several conditions apply.
Functions return a byte count (>= 0) or a negative errno, as the kernel's do.
"""
from __future__ import annotations

from .. import lerrno as E  # Linux's numbers, not the host's
from typing import TYPE_CHECKING, Any

from .folio import HPAGE_PMD_SIZE, PAGE_SIZE
from .huge_memory import move_pages_huge_pmd, move_splits_huge_pmd, split_huge_pmd, split_large_folio
from .pagetable import PMD_SHIFT, HugePmd, MarkerPte, PresentPte, SwapPte
from .vma import VMA

if TYPE_CHECKING:
    from .machine import MM, Machine

UFFDIO_MOVE_MODE_DONTWAKE = 1 << 0
UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES = 1 << 1


def uffd_move_lock(machine: "Machine", mm: "MM", dst_start: int,
                   src_start: int) -> tuple[VMA | None, VMA | None, int]:
    """uffd_move_lock(): find (and read-lock) the destination VMA, preparing its anon_vma, then the source VMA."""
    trail = machine.trail
    trail.enter("uffd_move_lock")
    dst_vma = mm.vmas.find(dst_start)
    if dst_vma is None:
        return None, None, _no_vma(machine, "dst")
    if not dst_vma.shared:
        mm.vmas.anon_vma_prepare(dst_vma)            # find_vma_and_prepare_anon()
    if dst_vma.start <= src_start < dst_vma.end:
        return dst_vma, dst_vma, 0
    src_vma = mm.vmas.find(src_start)          # looked up only: no anon_vma_prepare() for src
    if src_vma is None:
        return None, None, _no_vma(machine, "src")
    return dst_vma, src_vma, 0


def _no_vma(machine: "Machine", which: str) -> int:
    """A missing VMA: ENOENT since 6.9 (per-VMA locks), EINVAL in 6.8 (kernels.CHANGES['move_enoent'])."""
    if machine.kernel.has("move_enoent"):
        machine.trail.end(f"no VMA contains {which} -> ENOENT")
        return -E.ENOENT
    machine.trail.end(f"no VMA contains {which} -> EINVAL (6.8)")
    return -E.EINVAL


def vma_move_compatible(vma: VMA) -> bool:
    """vma_move_compatible(): no VM_PFNMAP, VM_IO, VM_HUGETLB, VM_MIXEDMAP or VM_SHADOW_STACK.

    The model has none of those special mappings, so every VMA is compatible.
    """
    return True


def validate_move_areas(machine: "Machine", ctx: Any, src_vma: VMA, dst_vma: VMA) -> int:
    """validate_move_areas(): the VMA rules for a move, in the kernel's order."""
    trail = machine.trail
    trail.enter("validate_move_areas")
    if src_vma.prot != dst_vma.prot or src_vma.page_prot() != dst_vma.page_prot():
        trail.end(f"protections differ (src {src_vma.prot or 'none'}, dst {dst_vma.prot or 'none'}) -> EINVAL")
        return -E.EINVAL
    if src_vma.has("locked") != dst_vma.has("locked"):
        trail.end("one VMA is mlocked and the other is not -> EINVAL")
        return -E.EINVAL
    if not src_vma.writable():
        trail.end("source VMA is not writable -> EINVAL")
        return -E.EINVAL
    if not vma_move_compatible(src_vma) or not vma_move_compatible(dst_vma):
        trail.end("special mapping (PFNMAP/IO/HUGETLB/MIXEDMAP/shadow stack) -> EINVAL")
        return -E.EINVAL
    if dst_vma.uffd_ctx is None or dst_vma.uffd_ctx is not ctx:
        trail.end("dst VMA not registered with this userfaultfd -> EINVAL")
        return -E.EINVAL
    if not src_vma.is_anonymous() or not dst_vma.is_anonymous():
        trail.end("not anonymous memory -> EINVAL")
        return -E.EINVAL
    return 0


def move_pages(machine: "Machine", ctx: Any, mm: "MM", dst_start: int, src_start: int,
               length: int, mode: int) -> int:
    """move_pages(): move ``length`` bytes; returns the bytes moved, or -errno if none were."""
    trail = machine.trail
    trail.enter("move_pages")
    dst_vma, src_vma, err = uffd_move_lock(machine, mm, dst_start, src_start)
    if err:
        return err
    assert dst_vma is not None and src_vma is not None
    if ctx.mmap_changing:
        if not machine.kernel.has("mmap_changing_eagain"):
            trail.end("mmap_changing: a non-cooperative event is pending -> EINVAL (6.8)")
            return -E.EINVAL
        trail.end("mmap_changing: a non-cooperative event is pending -> EAGAIN")
        return -E.EAGAIN
    if src_vma.shared:
        trail.end("source VMA is shared (VM_SHARED) -> EINVAL")
        return -E.EINVAL
    if src_start + length > src_vma.end:
        trail.end("source range goes past the end of its VMA -> EINVAL")
        return -E.EINVAL
    if dst_vma.shared:
        trail.end("destination VMA is shared (VM_SHARED) -> EINVAL")
        return -E.EINVAL
    if dst_start + length > dst_vma.end:
        trail.end("destination range goes past the end of its VMA -> EINVAL")
        return -E.EINVAL
    err = validate_move_areas(machine, ctx, src_vma, dst_vma)
    if err:
        return err

    holes = bool(mode & UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES)
    pt = mm.pt
    src_end = src_start + length
    src_addr, dst_addr, moved = src_start, dst_start, 0
    while src_addr < src_end:
        if not pt.mm_find_pmd(src_addr):
            if not holes:
                trail.end("no page table at all for src (mm_find_pmd) -> ENOENT")
                err = -E.ENOENT
                break
            pt.mm_alloc_pmd(src_addr)
        pt.mm_alloc_pmd(dst_addr)
        dst_pmd = pt.pmd(dst_addr)
        if isinstance(dst_pmd, HugePmd):
            trail.end("destination PMD is a huge PMD -> EEXIST")
            err = -E.EEXIST
            break
        src_pmd = pt.pmd(src_addr)
        if isinstance(src_pmd, HugePmd):
            if src_pmd.folio.huge_zero and not machine.kernel.has("move_zeropage"):
                trail.end("huge zero page source: refused before 6.9 (5d4747a6cc8e) -> EBUSY")
                err = -E.EBUSY
                break
            if move_splits_huge_pmd(dst_addr, src_addr, src_end) or dst_pmd is not None:
                folio = src_pmd.folio
                if not folio.huge_zero and not folio.exclusive[0]:
                    trail.end("THP must be split but is not anon-exclusive -> EBUSY")
                    err = -E.EBUSY
                    break
                trail.enter("split_huge_pmd")
                trail.note("THP cannot move whole (unaligned, short, or dst has a page table): split")
                split_huge_pmd(machine, mm, src_vma, src_addr)
                continue
            err = move_pages_huge_pmd(machine, mm, dst_vma, src_vma, dst_addr, src_addr)
            step = HPAGE_PMD_SIZE
        else:
            if src_pmd is None:
                if not holes:
                    trail.end("src PMD is empty (no page table) -> ENOENT")
                    err = -E.ENOENT
                    break
                pt.pte_alloc(src_addr)
            pt.pte_alloc(dst_addr)
            ret = move_pages_ptes(machine, mm, dst_vma, src_vma, dst_addr, src_addr,
                                  src_end - src_addr, holes)
            if machine.kernel.has("move_batch"):
                # 6.18 stores only a negative result: after an -EAGAIN, err stays -EAGAIN through a
                # step that then succeeds (kernels.CHANGES['move_batch']).  Model steps never
                # return -EAGAIN (no races), so this only mirrors the code.
                if ret < 0:
                    err = ret
                else:
                    step = ret
            else:
                err, step = (ret, 0) if ret < 0 else (0, ret)
        if err:
            if err == -E.EAGAIN:
                continue
            break
        dst_addr += step
        src_addr += step
        moved += step
    if moved and err:
        trail.note(f"stopped after {moved} bytes: the byte count is returned, the caller sees EAGAIN")
    if moved and not err:
        trail.end(f"moved {moved // PAGE_SIZE} page(s)")
    return moved if moved else err


def move_pages_ptes(machine: "Machine", mm: "MM", dst_vma: VMA, src_vma: VMA, dst_addr: int,
                    src_addr: int, length: int, holes: bool) -> int:
    """move_pages_ptes(): one PTE step (a batch, for present pages); bytes moved or -errno."""
    trail = machine.trail
    trail.enter("move_pages_ptes")
    pt = mm.pt
    while True:
        dst_pte = pt.get_pte(dst_addr)
        if dst_pte is not None:
            trail.end("destination PTE is not empty -> EEXIST")
            return -E.EEXIST
        src_pte = pt.get_pte(src_addr)
        if src_pte is None:
            if not holes:
                trail.end("source PTE is empty (a hole) -> ENOENT")
                return -E.ENOENT
            trail.note("ALLOW_SRC_HOLES: an empty source page counts as moved")
            return PAGE_SIZE
        if isinstance(src_pte, PresentPte):
            folio = src_pte.folio
            if folio.zero:
                if not machine.kernel.has("move_zeropage"):
                    trail.end("zero-page source: not movable before 6.9 -> EBUSY")
                    return -E.EBUSY
                return move_zeropage_pte(machine, mm, dst_addr, src_addr)
            if not folio.anon or not folio.exclusive[0]:
                # the check is PageAnonExclusive(&folio->page): the folio's first page, whichever page
                # is moved (for a large folio, the head; scenario mthp-fork-exit-reuse-head-decides).
                # It cannot tell why the flag is clear (fork COW-sharing, KSM merging, ...), and
                # neither does the trail
                trail.end("folio not anon-exclusive -> EBUSY" if not folio.large else
                          "large folio's first page not anon-exclusive -> EBUSY")
                return -E.EBUSY
            if folio.large:
                # 6.18 splits every PTE-mapped large folio before moving a page of it, even when the
                # whole folio is moved at aligned addresses (measured: the destination gets small pages)
                trail.enter("split_folio")
                trail.note(f"PTE-mapped large folio (order {folio.order}): split_folio() before moving")
                if split_large_folio(machine, [p.mm for p in machine.live_processes()], folio, remap_zero=True) is None:
                    why = ("is pinned" if folio.pincount else "has an extra reference" if folio.refs
                           else "is mapped by a PMD")
                    # split_folio() refuses with -EAGAIN; a 2026 stable fix ("userfaultfd: fix UFFDIO_MOVE
                    # livelock on large folio with extra references", 6.12.118; this 6.18.44 has it) turns
                    # that into -EBUSY where the split is called ("do not retry, extra refs may be held
                    # forever").  Without it (6.8 to 6.18 as released) move_pages() retries the -EAGAIN
                    # until the reference goes: a livelock the model does not reproduce.
                    trail.end(f"split_folio() refused: large folio {why}; its -EAGAIN is not retried -> EBUSY")
                    return -E.EBUSY
                continue
            return move_present_ptes(machine, mm, dst_vma, dst_addr, src_addr, length)
        if isinstance(src_pte, SwapPte):
            if not src_pte.exclusive:
                trail.end("swap entry not exclusive -> EBUSY")
                return -E.EBUSY
            return move_swap_pte(machine, mm, dst_addr, src_addr, src_pte)
        assert isinstance(src_pte, MarkerPte)
        trail.end(f"source is a {src_pte.kind} marker, not a swap entry -> EFAULT")
        return -E.EFAULT


def move_present_ptes(machine: "Machine", mm: "MM", dst_vma: VMA, dst_addr: int, src_addr: int,
                      length: int) -> int:
    """move_present_ptes(): under both PTLs, move this page and the movable ones after it in the same PMDs."""
    trail = machine.trail
    trail.enter("move_present_ptes")
    pt = mm.pt
    src_start = src_addr
    src_end = src_addr + length
    if length > PAGE_SIZE:
        dst_limit = ((dst_addr >> PMD_SHIFT) + 1) << PMD_SHIFT
        src_limit = ((src_addr >> PMD_SHIFT) + 1) << PMD_SHIFT
        src_end = min(src_end, src_limit, src_addr + (dst_limit - dst_addr))
    src_table = pt.pte_alloc(src_addr).ptes
    dst_table = pt.pte_alloc(dst_addr).ptes
    src_vpn, dst_vpn = src_addr >> 12, dst_addr >> 12
    err = 0
    while True:
        pte = src_table.pop(src_vpn)
        assert isinstance(pte, PresentPte)
        folio = pte.folio
        if folio.maybe_dma_pinned():
            src_table[src_vpn] = pte
            trail.end("folio maybe DMA-pinned -> EBUSY")
            err = -E.EBUSY
            break
        # folio_move_anon_rmap() + folio->index update: the folio now belongs to dst_vma; the
        # destination PTE is writable, soft-dirty, dirty only if the source was (one object moves)
        pte.write = pte.soft_dirty = True
        pte.uffd_wp = False
        dst_table[dst_vpn] = pte
        src_addr += PAGE_SIZE
        if src_addr >= src_end:
            break
        src_vpn += 1
        dst_vpn += 1
        if not check_ptes_for_batched_move(src_table.get(src_vpn), dst_table.get(dst_vpn)):
            break
    return src_addr - src_start if src_addr > src_start else err


def check_ptes_for_batched_move(src_pte: Any, dst_pte: Any) -> bool:
    """check_ptes_for_batched_move(): may the next page join the batch (same checks, no waiting)?"""
    if dst_pte is not None or not isinstance(src_pte, PresentPte):
        return False
    folio = src_pte.folio
    return (not folio.zero and not folio.large and folio.anon and folio.exclusive[src_pte.idx]
            and not folio.maybe_dma_pinned())


def move_zeropage_pte(machine: "Machine", mm: "MM", dst_addr: int, src_addr: int) -> int:
    """move_zeropage_pte(): clear the source zero-page PTE and map the zero page at the destination."""
    machine.trail.enter("move_zeropage_pte")
    mm.pt.set_pte(src_addr, None)
    mm.pt.set_pte(dst_addr, PresentPte(machine.phys.zero_page))
    return PAGE_SIZE


def move_swap_pte(machine: "Machine", mm: "MM", dst_addr: int, src_addr: int, pte: SwapPte) -> int:
    """move_swap_pte(): move the swap entry itself; nothing is read back from swap."""
    machine.trail.enter("move_swap_pte")
    mm.pt.set_pte(src_addr, None)
    mm.pt.set_pte(dst_addr, SwapPte(pte.entry, exclusive=pte.exclusive))
    return PAGE_SIZE


__all__ = ["move_pages", "UFFDIO_MOVE_MODE_DONTWAKE", "UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES"]
