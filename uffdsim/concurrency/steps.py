"""The atomic steps: each function is one indivisible transition of the machine.

Where an operation is split, it is split where the kernel's locking lets another CPU in:

* ``UFFDIO_COPY`` (``mfill_atomic_copy()``) per page: allocate a folio, ``copy_from_user()`` the
  source bytes into it (no page-table lock held: the copy sees the source as it is at that
  instant), then ``mfill_atomic_install_pte()`` under the destination PTL.  Three steps.
* ``MADV_DONTNEED`` (``zap_pte_range()``): clears every source PTE of the range under the
  source PTL.  One step (the pages sit in one page table).  The TLB flush comes after the
  PTL is dropped, but a store through a stale TLB entry lands in the zapped frame, which is
  lost just the same, so the model needs no TLB.
* ``UFFDIO_MOVE`` (``move_pages()``) per page, as on Linux 6.18: ``move_present_ptes()`` clears
  the source PTE without a flush (``ptep_get_and_clear()``), re-checks
  ``folio_maybe_dma_pinned()``, moves the rmap and index, sets the destination PTE, and flushes
  the source range with one ``flush_tlb_range()`` before the locks drop, all inside one
  critical section holding both PTLs and the folio lock.  (6.8-6.17's ``move_present_pte()``
  flushed first, with ``ptep_clear_flush()``; the order inside the section changes no outcome
  here.)  One step per page: 6.18 may put several pages into one critical section, which only
  removes interleavings.  (The exclusivity and pin checks before the locks are repeated under
  them, so folding them into the same step changes no outcome.)
* A user load or store: one step each.  A store through a read-only PTE first takes the
  write-protect fault (``do_wp_page()``), a step of its own, and then the store is retried.
* A load or store on an empty PTE of a MISSING-registered range: ``do_anonymous_page()`` hands
  the fault to ``handle_userfault()``, which queues a message and puts the thread to sleep.

Every step returns the new state and one line of text for the trace.
"""
from __future__ import annotations

from dataclasses import replace

from .state import Fault, Frame, Pte, State, Where


def _set(t: tuple, i: int, v: object) -> tuple:
    return t[:i] + (v,) + t[i + 1:]


def _fate(s: State, fid: int) -> str:
    """What happened to a frame whose mapping was just dropped."""
    f = s.frames[fid]
    if f.freed:
        return "freed"
    if f.pinned:
        return "kept alive by the pin"
    if f.child:
        return "kept by the fork child"
    return "still referenced"


# -------------------------------------------------------------------------------- thread A

def mfill_atomic_pte_copy_alloc(s: State, p: int) -> tuple[State, str]:
    """mfill_atomic_pte_copy(), first part: allocate the folio that will hold the copy."""
    s, fid = s.alloc(Frame())
    s = replace(s, a=replace(s.a, folio=fid))
    return s, f"UFFDIO_COPY src[{p}]->dst[{p}]: mfill_atomic_pte_copy allocates folio f{fid}"


def mfill_atomic_pte_copy_from_user(s: State, p: int) -> tuple[State, str]:
    """mfill_atomic_pte_copy(), second part: copy_from_user() of the source page, lock-free."""
    pte = s.src[p]
    fid = s.a.folio
    assert pte is not None and fid is not None, "the mover copies a populated source page"
    value = s.frames[pte.frame].value
    s = s.with_frame(fid, replace(s.frames[fid], value=value))
    s = replace(s, a=replace(s.a, copies=s.a.copies + 1))
    return s, (f"mfill_atomic_pte_copy: copy_from_user reads src[{p}] (f{pte.frame}) = {value} "
               f"into f{fid}")


def mfill_atomic_install_pte(s: State, p: int) -> tuple[State, str]:
    """mfill_atomic_install_pte(): map the copied folio at the destination under its PTL."""
    fid = s.a.folio
    assert fid is not None
    if s.dst[p] is not None:                     # cannot happen here: only A fills dst
        s = replace(s, a=replace(s.a, folio=None, errors=s.a.errors + ("EEXIST",)))
        return s.release_if_unused(fid), f"mfill_atomic_install_pte: dst[{p}] taken -> EEXIST"
    s = s.with_pte("dst", p, Pte(fid))
    s = replace(s, a=replace(s.a, folio=None, at_dst=_set(s.a.at_dst, p, True)))
    return s, (f"mfill_atomic_install_pte: dst[{p}] -> f{fid} (value {s.frames[fid].value}); "
               "then userfaultfd_copy() wakes waiters on dst")


def zap_pte_range(s: State, pages: range) -> tuple[State, str]:
    """zap_pte_range() for MADV_DONTNEED on the source: clear the PTEs, drop the folios."""
    parts = []
    for p in pages:
        pte = s.src[p]
        s = replace(s, a=replace(s.a, gone=_set(s.a.gone, p, True)))
        if pte is None:
            parts.append(f"src[{p}] already empty")
            continue
        value = s.frames[pte.frame].value
        s = s.with_pte("src", p, None).release_if_unused(pte.frame)
        fate = _fate(s, pte.frame)
        if fate == "freed":
            # zap_pte_range() only gathers the page; the mmu_gather frees it after the TLB flush,
            # in tlb_finish_mmu() at the end of the madvise() call (6.18)
            fate = "freed by tlb_finish_mmu() after the TLB flush, in the same call"
        parts.append(f"src[{p}] cleared (f{pte.frame}, value {value}, {fate})")
    span = f"src[{pages.start}]" if len(pages) == 1 else f"src[{pages.start}..{pages.stop - 1}]"
    return s, f"MADV_DONTNEED {span}: zap_pte_range: " + "; ".join(parts)


def _not_movable(f: Frame) -> str | None:
    """The EBUSY reasons for a small anon folio: move_pages_ptes() (not exclusive), move_present_ptes() (pinned)."""
    if not f.exclusive:
        return "is not PageAnonExclusive (COW-shared with the fork child)"
    if f.pinned:
        return "is pinned (folio_maybe_dma_pinned: any FOLL_PIN pin, long-term or not)"
    return None


def move_present_ptes(s: State, p: int, allow_copy: bool = False) -> tuple[State, str]:
    """move_pages_ptes() -> move_present_ptes() (6.18) for one page: one critical section under
    both PTLs and the folio lock.  ``allow_copy`` is HYPOTHETICAL (not Linux): copy under the same locks instead
    of failing with EBUSY, clearing the source all the same."""
    head = f"UFFDIO_MOVE src[{p}]->dst[{p}]: "
    if s.dst[p] is not None:
        s = replace(s, a=replace(s.a, errors=s.a.errors + ("EEXIST",)))
        return s, head + f"dst[{p}] not empty -> EEXIST"
    pte = s.src[p]
    if pte is None:
        s = replace(s, a=replace(s.a, errors=s.a.errors + ("ENOENT",)))
        return s, head + f"src[{p}] empty -> ENOENT"
    frame = s.frames[pte.frame]
    why = _not_movable(frame)
    a = replace(s.a, gone=_set(s.a.gone, p, True), at_dst=_set(s.a.at_dst, p, True))
    if why is None:
        s = s.with_pte("src", p, None).with_pte("dst", p, Pte(pte.frame))
        return replace(s, a=a), (head + f"move_present_ptes (6.18) under both PTLs + folio lock: "
                                 f"src[{p}] cleared, pin re-checked, rmap moved, dst[{p}] -> "
                                 f"f{pte.frame} (same frame, value {frame.value}), one "
                                 f"flush_tlb_range() before unlocking; then userfaultfd_move() wakes "
                                 f"waiters on dst")
    if not allow_copy:
        s = replace(s, a=replace(s.a, errors=s.a.errors + ("EBUSY",)))
        # 6.18: move_pages_ptes() checks PageAnonExclusive before it takes the folio lock; the pin
        # check, folio_maybe_dma_pinned(), is only in move_present_ptes(), under both PTLs
        where = "move_pages_ptes" if not frame.exclusive else "move_present_ptes"
        return s, head + f"{where}: folio f{pte.frame} {why} -> EBUSY, nothing moved"
    s, fid = s.alloc(Frame(value=frame.value))
    s = s.with_pte("src", p, None).with_pte("dst", p, Pte(fid)).release_if_unused(pte.frame)
    s = replace(s, a=replace(a, copies=a.copies + 1))
    return s, (head + f"[HYPOTHETICAL ALLOW_COPY] f{pte.frame} {why}: under both PTLs src[{p}] "
               f"cleared and flushed, value {frame.value} copied into new f{fid}, dst[{p}] -> "
               f"f{fid}; old frame {_fate(s, pte.frame)}"
               + (": a device writing through the pin now writes into it, and nothing maps it"
                  if frame.pinned else ""))


def publish_flip(s: State) -> tuple[State, str]:
    """User space (the GC), not the kernel: publish the forwarding pointers of the pages that
    are now at the destination; from here on B addresses them at dst."""
    flip = tuple(g and d for g, d in zip(s.a.gone, s.a.at_dst))
    s = replace(s, flip=flip)
    moved = [str(p) for p, f in enumerate(flip) if f]
    if not moved:
        return s, "GC: nothing reached dst; the forwarding pointers keep pointing at src"
    return s, f"GC publishes the forwarding pointer(s): page {', '.join(moved)} now lives at dst"


def userfaultfd_read_and_wake(s: State) -> tuple[State, str]:
    """read(2) of the uffd message, then UFFDIO_WAKE (userfaultfd_wake()) on its range."""
    fault, rest = s.faults[0], s.faults[1:]
    s = replace(s, faults=rest, b=replace(s.b, pc="load"))
    kind = "write" if fault.write else "read"
    return s, (f"read(uffd): PAGEFAULT ({kind}) at {fault.where}[{fault.page}]; the flip is "
               f"published, so UFFDIO_WAKE {fault.where}[{fault.page}]: B restarts the increment "
               "through the forwarding pointer")


# -------------------------------------------------------------------------------- thread B

def _target(s: State) -> int:
    return s.b.done % len(s.src)


def handle_userfault(s: State, where: Where, p: int, write: bool) -> tuple[State, str]:
    """do_anonymous_page() on an empty PTE of a MISSING-registered range -> handle_userfault():
    queue a PAGEFAULT message and sleep until woken."""
    s = replace(s, faults=s.faults + (Fault(where, p, write),), b=replace(s.b, pc="blocked"))
    op = "store to" if write else "load from"
    return s, (f"{op} {where}[{p}]: PTE empty -> do_anonymous_page -> handle_userfault: "
               "MISSING fault queued, B sleeps")


def user_load(s: State) -> tuple[State, str]:
    """The load half of ``counter++``, at the address the forwarding pointer gives."""
    p = _target(s)
    where: Where = "dst" if s.flip[p] else "src"
    pte = s.table(where)[p]
    if pte is None:
        return handle_userfault(s, where, p, write=False)
    value = s.frames[pte.frame].value
    s = replace(s, b=replace(s.b, pc="store", where=where, reg=value))
    return s, f"load {where}[{p}] (f{pte.frame}) = {value}"


def do_wp_page(s: State, where: Where, p: int) -> tuple[State, str]:
    """do_wp_page(): write fault on a read-only PTE; a shared anon page is copied (wp_page_copy),
    an exclusive one reused."""
    pte = s.table(where)[p]
    assert pte is not None
    old = s.frames[pte.frame]
    if old.exclusive and not old.child:
        s = s.with_pte(where, p, Pte(pte.frame, True))
        return s, f"store to {where}[{p}]: write fault -> do_wp_page reuses f{pte.frame}"
    s, fid = s.alloc(Frame(value=old.value))
    s = s.with_pte(where, p, Pte(fid, True)).release_if_unused(pte.frame)
    return s, (f"store to {where}[{p}]: write fault on f{pte.frame} (shared with the fork child) "
               f"-> do_wp_page copies it into f{fid}, exclusive and writable; B will retry")


def user_store(s: State, increments: int) -> tuple[State, str]:
    """The store half of ``counter++``: value loaded + 1, to the slot it was loaded from."""
    where, p = s.b.where, _target(s)
    pte = s.table(where)[p]
    if pte is None:
        return handle_userfault(s, where, p, write=True)
    if not pte.writable:
        return do_wp_page(s, where, p)
    value = s.b.reg + 1
    s = s.with_frame(pte.frame, replace(s.frames[pte.frame], value=value))
    done = s.b.done + 1
    s = replace(s, b=replace(s.b, pc="done" if done == increments else "load", done=done))
    return s, f"store {where}[{p}] (f{pte.frame}) = {value}; increment {done}/{increments} done"
