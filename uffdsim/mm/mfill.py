"""UFFDIO_COPY and UFFDIO_ZEROPAGE (mm/userfaultfd.c: mfill_atomic and its PTE helpers)."""
from __future__ import annotations

from .. import lerrno as E  # Linux's numbers, not the host's
from typing import TYPE_CHECKING, Any, Callable

from .folio import PAGE_SIZE
from .machine import Segv
from .pagetable import HugePmd, MarkerPte, PresentPte, Pte
from .rmap import folio_add_new_anon_rmap, folio_add_rmap_pte
from .vma import VMA

if TYPE_CHECKING:
    from .machine import MM, Machine


def pte_none_mostly(pte: Pte) -> bool:
    """pte_none_mostly(): empty, or only a uffd-wp marker."""
    return pte is None or (isinstance(pte, MarkerPte) and pte.kind == "uffd_wp")


def uffd_mfill_lock(machine: "Machine", mm: "MM", dst_start: int, length: int) -> VMA | int:
    """uffd_mfill_lock(): the destination VMA, which must hold the range and be registered with a uffd."""
    trail = machine.trail
    trail.enter("uffd_mfill_lock")
    vma = mm.vmas.find(dst_start)
    if vma is None:
        trail.end("no VMA contains dst -> ENOENT")
        return -E.ENOENT
    if dst_start + length > vma.end or vma.uffd_ctx is None:
        trail.end("validate_dst_vma(): range leaves the VMA or VMA not registered -> ENOENT")
        return -E.ENOENT
    return vma


def mfill_atomic(machine: "Machine", ctx: Any, mm: "MM", dst_start: int, length: int, wp: bool,
                 fill: Callable[[VMA, int, int], None], name: str,
                 fetch: Callable[[int], None] | None = None) -> int:
    """mfill_atomic(): fill the destination page by page with ``fill``; bytes filled or -errno.

    ``fetch(done)`` runs first for each page: UFFDIO_COPY reads its source page there
    (copy_from_user() into the new folio), so the source is faulted in even when the
    destination then turns out to be populated (EEXIST).
    """
    trail = machine.trail
    trail.enter("mfill_atomic")
    vma = uffd_mfill_lock(machine, mm, dst_start, length)
    if isinstance(vma, int):
        return vma
    if ctx.mmap_changing:
        trail.end("mmap_changing: a non-cooperative event is pending -> EAGAIN")
        return -E.EAGAIN
    if wp and "wp" not in vma.uffd_modes:
        trail.end("MODE_WP on a range not registered for write-protect -> EINVAL")
        return -E.EINVAL
    if not vma.is_anonymous() and not vma.is_shmem():
        trail.end("neither anonymous nor shmem -> EINVAL")
        return -E.EINVAL
    done = 0
    err = 0
    for dst in range(dst_start, dst_start + length, PAGE_SIZE):
        if isinstance(mm.pt.pmd(dst), HugePmd):
            trail.end("destination PMD is a huge PMD -> EEXIST")
            err = -E.EEXIST
            break
        if fetch is not None:
            try:
                fetch(done)
            except Segv:
                trail.end("copy_from_user() on the source failed -> EFAULT")
                err = -E.EFAULT
                break
        if not pte_none_mostly(mm.pt.get_pte(dst)):
            trail.end("destination PTE is not empty -> EEXIST")
            err = -E.EEXIST
            break
        trail.enter(name)
        fill(vma, dst, done)
        done += PAGE_SIZE
    if done and err:
        trail.note(f"stopped after {done} bytes: the caller sees EAGAIN")
    return done if done else err


def mfill_atomic_pte_copy(machine: "Machine", mm: "MM", vma: VMA, dst: int, value: int, wp: bool) -> None:
    """mfill_atomic_pte_copy(): a new exclusive page holding the copied bytes, mapped at dst."""
    if vma.is_shmem():
        install_shmem_page(machine, mm, vma, dst, value, wp)
        return
    folio = machine.phys.alloc_folio(data=[value])
    folio_add_new_anon_rmap(folio, 0)
    mm.vmas.anon_vma_prepare(vma)
    mm.pt.set_pte(dst, PresentPte(folio, 0, write=vma.writable() and not wp, dirty=True, uffd_wp=wp))


def mfill_atomic_pte_zeropage(machine: "Machine", mm: "MM", vma: VMA, dst: int) -> None:
    """mfill_atomic_pte_zeropage(): map the shared zero page at dst (a zeroed page cache page for shmem)."""
    if vma.is_shmem():
        install_shmem_page(machine, mm, vma, dst, 0, False)
        return
    mm.pt.set_pte(dst, PresentPte(machine.phys.zero_page))


def install_shmem_page(machine: "Machine", mm: "MM", vma: VMA, dst: int, value: int, wp: bool) -> None:
    """shmem_mfill_atomic_pte(): add a page to the shmem page cache and map it."""
    assert vma.file is not None
    folio = machine.phys.alloc_folio(data=[value])
    folio.anon = False
    folio.page_cache = True
    vma.file.cache[vma.pgoff_of(dst)] = folio
    folio_add_rmap_pte(folio, 0)
    mm.pt.set_pte(dst, PresentPte(folio, 0, write=vma.writable() and not wp, uffd_wp=wp))
