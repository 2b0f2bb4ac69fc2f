"""The explorer's trace names the kernel function that does each thing (6.18)."""
from __future__ import annotations

from uffdsim.concurrency import Program, run_to_end


def _lines(strategy: str, schedule: str, src_page: str = "exclusive") -> list[str]:
    run = run_to_end(Program.build(strategy, pages=1, increments=1, src_page=src_page), schedule)
    return run.report()


def test_the_wake_after_a_copy_or_a_move_is_the_ioctls_not_the_pte_installers() -> None:
    """Waiters on dst are woken by userfaultfd_copy()/userfaultfd_move() (fs/userfaultfd.c) after
    the fill, not by mfill_atomic_install_pte() or move_present_ptes()."""
    copy = [line for line in _lines("copy-dontneed", "") if "waiters on dst" in line]
    move = [line for line in _lines("move", "") if "waiters on dst" in line]
    assert copy and all("userfaultfd_copy() wakes waiters on dst" in line for line in copy), copy
    assert move and all("userfaultfd_move() wakes waiters on dst" in line for line in move), move


def test_the_discarded_frame_is_freed_after_the_tlb_flush_not_by_zap_pte_range() -> None:
    """MADV_DONTNEED: zap_pte_range() clears the PTE and gathers the page; the frame goes back to
    the allocator only after the TLB flush, in tlb_finish_mmu() (mm/mmu_gather.c, 6.18)."""
    zap = [line for line in _lines("copy-dontneed", "AAA") if "zap_pte_range" in line]
    assert zap, _lines("copy-dontneed", "AAA")
    assert all("freed by tlb_finish_mmu() after the TLB flush" in line for line in zap), zap


def test_the_pin_check_is_for_any_foll_pin_pin_not_only_long_term_ones() -> None:
    """folio_maybe_dma_pinned() in move_present_ptes() sees every FOLL_PIN pin (6.18); the trace
    used to call it "a long-term pin"."""
    pinned = [line for line in _lines("move", "A", src_page="pinned") if "pinned" in line]
    assert pinned, _lines("move", "A", src_page="pinned")
    assert all("any FOLL_PIN pin, long-term or not" in line for line in pinned), pinned
