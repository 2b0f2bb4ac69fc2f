"""The ctypes syscall layer against the running kernel: what UFFDIO_MOVE does, as user space sees it.

Skipped (with the reason) where userfaultfd or UFFDIO_MOVE is unavailable.  Every blocking call is
bounded: uffd reads poll with a timeout, faulting threads are daemons joined with a timeout, forked
children wait on a pipe with a timeout and always _exit.
"""
from __future__ import annotations

import errno
import importlib
import os
import threading
from contextlib import contextmanager
from typing import Iterator

import pytest

from uffdsim.backends.kernel import sys as k
from uffdsim.backends.kernel.caps import CAP_SYS_ADMIN, CAP_SYS_PTRACE, has_cap
from uffdsim.backends.kernel.ksm import ksm_guard
from uffdsim.backends.kernel.swap import ZramSwap
from uffdsim.errors import UffdError

from kernel_helpers import live_child

AVAILABLE, REASON = k.userfaultfd_available()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not AVAILABLE, reason=REASON)]

P = k.PAGE_SIZE


def frames_visible() -> bool:
    """Does pagemap show PFNs and swap entries (root or CAP_SYS_ADMIN)?"""
    return os.geteuid() == 0 or has_cap(CAP_SYS_ADMIN)


def test_ioctl_numbers_follow_the_generic_encoding() -> None:
    assert k.UFFDIO_MOVE == 0xC028AA05
    assert k.UFFDIO_API == 0xC018AA3F
    assert k.UFFDIO_REGISTER == 0xC020AA00
    assert k.UFFDIO_COPY == 0xC028AA03
    assert k.USERFAULTFD_IOC_NEW == 0xAA00
    assert k.UFFD_FEATURE_MOVE == 0x10000 and k.UFFD_FEATURES["move"] == 0x10000


@contextmanager
def anon(pages: int, fill_byte: int | None = None, **kw: int) -> Iterator[int]:
    addr = k.mmap(pages * P, **kw)
    try:
        if fill_byte is not None:
            k.fill(addr, pages * P, fill_byte)
        yield addr
    finally:
        k.munmap(addr, pages * P)


@pytest.fixture
def uffd() -> Iterator[k.Userfaultfd]:
    u = k.Userfaultfd.open()
    u.api(k.UFFD_FEATURE_MOVE)
    yield u
    u.close()


def move_error(u: k.Userfaultfd, *args: int) -> UffdError:
    with pytest.raises(UffdError) as info:
        u.move(*args)
    return info.value


def test_api_reports_move_and_register_allows_it(uffd: k.Userfaultfd) -> None:
    assert uffd.features & k.UFFD_FEATURE_MOVE
    with anon(2) as dst:
        ioctls = uffd.register(dst, 2 * P)
        assert ioctls & k.UFFDIO_IOCTL_BITS["move"]


def test_move_transfers_the_frame_and_empties_the_source(uffd: k.Userfaultfd) -> None:
    with anon(2, fill_byte=0x41) as src, anon(2) as dst:
        uffd.register(dst, 2 * P)
        before = [e.pfn for e in k.pagemap(src, 2)]
        assert uffd.move(dst, src, 2 * P) == 2 * P
        after = k.pagemap(dst, 2)
        assert [e.pfn for e in after] == before          # zero-copy: same frames
        assert all(e.present and e.exclusive for e in after)
        assert not any(e.present for e in k.pagemap(src, 2))
        assert k.peek(dst, 1) == b"A" and k.peek(dst + P, 1) == b"A"


def test_populated_destination_is_eexist_with_the_field_written(uffd: k.Userfaultfd) -> None:
    with anon(1, fill_byte=1) as src, anon(1, fill_byte=2) as dst:
        uffd.register(dst, P)
        err = move_error(uffd, dst, src, P)
        assert (err.errno, err.out) == (errno.EEXIST, -errno.EEXIST)


def test_source_hole_is_enoent_unless_allowed(uffd: k.Userfaultfd) -> None:
    with anon(2) as src, anon(2) as dst:
        uffd.register(dst, 2 * P)
        err = move_error(uffd, dst, src, 2 * P)
        assert (err.errno, err.out) == (errno.ENOENT, -errno.ENOENT)
        assert uffd.move(dst, src, 2 * P, k.UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES) == 2 * P
        assert not any(e.present for e in k.pagemap(dst, 2))


def test_partial_progress_is_eagain_with_a_positive_count(uffd: k.Userfaultfd) -> None:
    with anon(4, fill_byte=3) as src, anon(4) as dst:
        uffd.register(dst, 4 * P)
        k.madvise(src + 2 * P, P, k.MADV_DONTNEED)
        err = move_error(uffd, dst, src, 4 * P)
        assert (err.errno, err.out) == (errno.EAGAIN, 2 * P)


def test_argument_errors_leave_the_field_unwritten(uffd: k.Userfaultfd) -> None:
    with anon(2, fill_byte=1) as src, anon(2) as dst:
        uffd.register(dst, 2 * P)
        for args in [(dst + 1, src, P, 0), (dst, src + 1, P, 0), (dst, src, 0, 0),
                     (dst, src, P, 1 << 7)]:
            err = move_error(uffd, *args)
            assert (err.errno, err.out) == (errno.EINVAL, None), args


def test_unregistered_destination_is_einval_written(uffd: k.Userfaultfd) -> None:
    with anon(1, fill_byte=1) as src, anon(1) as dst:
        err = move_error(uffd, dst, src, P)
        assert (err.errno, err.out) == (errno.EINVAL, -errno.EINVAL)


def test_ioctls_before_the_api_handshake_are_einval() -> None:
    with k.Userfaultfd.open() as u, anon(1, fill_byte=1) as src, anon(1) as dst:
        with pytest.raises(UffdError) as info:
            u.move(dst, src, P)
        assert (info.value.errno, info.value.out) == (errno.EINVAL, None)


def test_raw_ioctl_with_a_bad_pointer_is_efault(uffd: k.Userfaultfd) -> None:
    with pytest.raises(UffdError) as info:
        k.ioctl(uffd.fileno(), k.UFFDIO_MOVE, 8)
    assert info.value.errno == errno.EFAULT


def test_page_shared_with_a_live_child_is_ebusy_until_written(uffd: k.Userfaultfd) -> None:
    with anon(1, fill_byte=1) as src, anon(1) as dst:
        uffd.register(dst, P)
        with live_child():
            err = move_error(uffd, dst, src, P)
            assert (err.errno, err.out) == (errno.EBUSY, -errno.EBUSY)
            k.poke(src, b"\x02")               # COW: the parent gets its own exclusive copy
            assert uffd.move(dst, src, P) == P


def test_pinned_page_is_ebusy_until_released(uffd: k.Userfaultfd) -> None:
    with anon(1, fill_byte=1) as src, anon(1) as dst:
        uffd.register(dst, P)
        try:
            pin = k.Pin(src, P)
        except UffdError as e:
            pytest.skip(str(e))
        with pin:
            err = move_error(uffd, dst, src, P)
            assert (err.errno, err.out) == (errno.EBUSY, -errno.EBUSY)
        assert uffd.move(dst, src, P) == P


def test_zero_page_moves_and_pagemap_does_not_fault(uffd: k.Userfaultfd) -> None:
    with anon(1) as src, anon(1) as dst:
        uffd.register(dst, P)
        assert not k.pagemap(src)[0].present    # reading pagemap did not fault it in
        k.touch_read(src, P)
        assert k.is_zero_page(k.pagemap(src)[0])
        assert uffd.move(dst, src, P) == P
        assert k.is_zero_page(k.pagemap(dst)[0]) and not k.pagemap(src)[0].present


def test_copy_and_zeropage_into_a_populated_page_are_eexist(uffd: k.Userfaultfd) -> None:
    with anon(1, fill_byte=9) as src, anon(2) as dst:
        uffd.register(dst, 2 * P)
        assert uffd.copy(dst, src, P) == P
        assert k.peek(dst, 1) == b"\x09"
        with pytest.raises(UffdError) as info:
            uffd.copy(dst, src, P)
        assert (info.value.errno, info.value.out) == (errno.EEXIST, -errno.EEXIST)
        assert uffd.zeropage(dst + P, P) == P
        with pytest.raises(UffdError) as info:
            uffd.zeropage(dst + P, P)
        assert (info.value.errno, info.value.out) == (errno.EEXIST, -errno.EEXIST)


def _fault_in_thread(addr: int) -> tuple[threading.Thread, dict]:
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("byte", k.peek(addr, 1)), daemon=True)
    t.start()
    return t, box


def test_move_wakes_the_faulting_thread(uffd: k.Userfaultfd) -> None:
    with anon(1, fill_byte=0x55) as src, anon(1) as dst:
        uffd.register(dst, P)
        t, box = _fault_in_thread(dst)
        msgs = uffd.read_msgs(5000)
        assert msgs and msgs[0]["type"] == "pagefault" and msgs[0]["address"] == dst
        assert not msgs[0]["write"]
        assert uffd.move(dst, src, P) == P
        t.join(5)
        assert box.get("byte") == b"\x55"


def test_dontwake_leaves_the_thread_blocked_until_wake(uffd: k.Userfaultfd) -> None:
    with anon(1, fill_byte=0x66) as src, anon(1) as dst:
        uffd.register(dst, P)
        t, box = _fault_in_thread(dst)
        assert uffd.read_msgs(5000)
        assert uffd.move(dst, src, P, k.UFFDIO_MOVE_MODE_DONTWAKE) == P
        t.join(0.3)
        assert t.is_alive()
        uffd.wake(dst, P)
        t.join(5)
        assert box.get("byte") == b"\x66"


def test_writeprotect_sets_the_pagemap_wp_bit() -> None:
    with k.Userfaultfd.open() as u, anon(1, fill_byte=1) as a:
        u.api(k.UFFD_FEATURE_PAGEFAULT_FLAG_WP)
        u.register(a, P, k.UFFDIO_REGISTER_MODE_WP)
        u.writeprotect(a, P, True)
        assert k.pagemap(a)[0].uffd_wp
        u.writeprotect(a, P, False)
        assert not k.pagemap(a)[0].uffd_wp


@pytest.mark.skipif(k.thp_enabled() not in ("always", "madvise"), reason="THP disabled")
def test_pmd_mapped_thp_is_detected() -> None:
    a = k.mmap_aligned(k.PMD_SIZE)
    try:
        assert a % k.PMD_SIZE == 0
        k.madvise(a, k.PMD_SIZE, k.MADV_HUGEPAGE)
        k.fill(a, k.PMD_SIZE, 1)
        if not k.is_thp(k.pagemap(a)[0]):
            pytest.skip("no huge page allocated (memory fragmented?)")
        assert k.is_pmd_mapped(a + 5 * P)
        k.madvise(a + P, P, k.MADV_DONTNEED)      # splits the PMD
        assert not k.is_pmd_mapped(a)
    finally:
        k.munmap(a, k.PMD_SIZE)


@contextmanager
def split_huge_page_region() -> Iterator[int]:
    """1024 pages, 2 MiB aligned, both huge pages faulted in, then MADV_NOHUGEPAGE on pages 255..270:
    the first huge page is PTE-mapped in three VMAs, the second (block 512..1023) stays PMD-mapped."""
    a = k.mmap_aligned(2 * k.PMD_SIZE)
    try:
        k.madvise(a, 2 * k.PMD_SIZE, k.MADV_HUGEPAGE)
        k.fill(a, 2 * k.PMD_SIZE, 7)
        if not (k.is_pmd_mapped(a) and k.is_pmd_mapped(a + k.PMD_SIZE)):
            pytest.skip("no huge pages allocated (memory fragmented?)")
        k.madvise(a + 255 * P, 16 * P, k.MADV_NOHUGEPAGE)
        yield a
    finally:
        k.munmap(a, 2 * k.PMD_SIZE)


def kernel_without_scan_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make PAGEMAP_SCAN refuse PAGE_IS_GUARD with EINVAL, as Linux 6.12.118 does."""
    pm = importlib.import_module("uffdsim.backends.kernel.sys.pagemap")   # the module, not the function
    real = pm._pagemap_scan

    def scan(addr: int, length: int, mask: int) -> list[tuple]:
        if mask & k.PAGE_IS_GUARD:
            raise UffdError(errno.EINVAL, "ioctl PAGEMAP_SCAN")
        return real(addr, length, mask)
    monkeypatch.setattr(pm, "_pagemap_scan", scan)
    monkeypatch.setattr(pm, "_scan_knows_guard", None)


@pytest.mark.skipif(k.thp_enabled() not in ("always", "madvise"), reason="THP disabled")
def test_observe_asks_pagemap_scan_again_without_the_guard_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the 6.12 lab fuzzer: 6.12 refuses PAGE_IS_GUARD, and observe used to fall back to
    kpageflags + smaps, which called a PTE-mapped THP page in a VMA holding a huge PMD huge."""
    from uffdsim.backends.kernel.observe import observe
    kernel_without_scan_guard(monkeypatch)
    with split_huge_page_region() as a:
        assert [v["thp"] for v in observe(a + 300 * P, P)] == [False]
        assert [v["thp"] for v in observe(a + 511 * P, 2 * P)] == [False, True]
        assert all("thp" not in v.get("hidden", ()) for v in observe(a + 511 * P, 2 * P))


@pytest.mark.skipif(not frames_visible(), reason="kpageflags needs root (CAP_SYS_ADMIN)")
@pytest.mark.skipif(k.thp_enabled() not in ("always", "madvise"), reason="THP disabled")
def test_observe_without_pagemap_scan_says_what_it_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux < 6.7 (no PAGEMAP_SCAN): thp is exact where the VMA or the frames decide it; a THP page
    whose block a VMA with PMD mappings covers may be PTE-mapped, so its thp is hidden."""
    from uffdsim.backends.kernel.observe import observe
    pm = importlib.import_module("uffdsim.backends.kernel.sys.pagemap")   # the module, not the function

    def no_scan(addr: int, length: int, mask: int) -> list[tuple]:
        raise UffdError(errno.ENOTTY, "ioctl PAGEMAP_SCAN")
    monkeypatch.setattr(pm, "_pagemap_scan", no_scan)
    with split_huge_page_region() as a:
        small = observe(a + 300 * P, P)[0]          # its VMA starts at page 271: no PMD can map it
        assert small["thp"] is False and "hidden" not in small
        big = observe(a + 600 * P, P)[0]
        assert big["thp"] is True and big["hidden"] == ["thp"]


def test_ksm_merged_page_is_ebusy(uffd: k.Userfaultfd) -> None:
    ok, why = k.ksm_available()
    if not ok:
        pytest.skip(why)
    with ksm_guard():              # the ksm lock and journal, as the kernel backend takes them
        ksm_merged_page_is_ebusy(uffd)


def ksm_merged_page_is_ebusy(uffd: k.Userfaultfd) -> None:
    saved = k.ksm_save()
    with anon(2, fill_byte=0x77) as src, anon(1) as dst:
        uffd.register(dst, P)
        k.madvise(src, 2 * P, k.MADV_MERGEABLE)
        try:
            k.ksm_merge_until_stable(timeout=30)
            if not k.is_ksm(k.pagemap(src)[0]):
                pytest.skip("KSM did not merge the pages")
            err = move_error(uffd, dst, src, P)
            assert (err.errno, err.out) == (errno.EBUSY, -errno.EBUSY)
        finally:
            k.ksm_unmerge_all(saved)
    assert k.ksm_save() == saved


def test_availability_reason_is_a_sentence() -> None:
    ok, why = k.userfaultfd_available()
    assert ok and "available" in why


def test_fork_with_event_fork_reports_the_child() -> None:
    """With EVENT_FORK a plain os.fork() would deadlock (the event must be read during fork)."""
    if not has_cap(CAP_SYS_PTRACE):
        pytest.skip("UFFD_FEATURE_EVENT_FORK needs CAP_SYS_PTRACE (userfaultfd_api() returns EPERM)")
    with k.Userfaultfd.open() as u, anon(1) as dst:
        u.api(k.UFFD_FEATURE_EVENT_FORK | k.UFFD_FEATURE_MOVE)
        u.register(dst, P)
        pid, msgs = k.fork_with_events([u], timeout=5)
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        assert [m["type"] for m in msgs] == ["fork"]
        os.close(msgs[0]["ufd"])


def test_pte_markers_are_decoded_from_pagemap() -> None:
    with k.Userfaultfd.open() as u, anon(3) as a:
        u.api(k.UFFD_FEATURE_PAGEFAULT_FLAG_WP | k.UFFD_FEATURE_WP_UNPOPULATED)
        try:
            k.madvise(a, P, k.MADV_GUARD_INSTALL)
        except UffdError as e:
            pytest.skip(f"no guard regions: {e}")
        u.register(a + P, P, k.UFFDIO_REGISTER_MODE_WP)
        u.writeprotect(a + P, P, True)
        entries = k.pagemap(a, 3)
        assert [e.guard for e in entries] == [True, False, False]
        assert [e.uffd_wp and e.swapped for e in entries] == [False, True, False]
        if not frames_visible():
            pytest.skip("without CAP_SYS_ADMIN pagemap hides swap types, so markers' kinds are hidden")
        assert [e.marker for e in entries] == ["guard", "uffd_wp", None]


def test_swapped_page_moves_as_a_swap_entry(uffd: k.Userfaultfd) -> None:
    if k.swaps_active():
        pytest.skip("a swap device is already active; not touching it")
    try:
        swap = ZramSwap(size_mb=16).__enter__()
    except UffdError as e:
        pytest.skip(str(e))
    try:
        with anon(1, fill_byte=0x51) as src, anon(1) as dst:
            uffd.register(dst, P)
            k.madvise(src, P, k.MADV_PAGEOUT)
            before = k.pagemap(src)[0]
            if not before.swapped:
                pytest.skip("MADV_PAGEOUT did not swap the page out")
            assert before.marker is None
            assert uffd.move(dst, src, P) == P
            after = k.pagemap(dst)[0]
            assert after.swapped and (after.swap_type, after.swap_offset) == \
                (before.swap_type, before.swap_offset)
            assert k.peek(dst, 1) == b"\x51"          # swap-in at the destination
    finally:
        swap.__exit__(None, None, None)
    assert "/dev/zram0" not in k.swaps_active()


def test_user_mode_only_kernel_access_to_a_missing_page_is_efault() -> None:
    """With UFFD_USER_MODE_ONLY a syscall touching a registered missing page gets EFAULT instead of
    raising a fault (handle_userfault() returns VM_FAULT_SIGBUS for kernel-mode faults); a
    user-space access still faults: why unprivileged runs skip scenarios needing kernel faults."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    with k.Userfaultfd.open(user_mode_only=True) as u, anon(1) as a:
        assert u.user_mode_only
        u.api(k.UFFD_FEATURE_MOVE)
        u.register(a, P)
        r, w = os.pipe()
        try:
            assert libc.write(w, ctypes.c_void_p(a), 1) == -1 and ctypes.get_errno() == errno.EFAULT
        finally:
            os.close(r)
            os.close(w)
        t = threading.Thread(target=k.touch_read, args=(a, 1), daemon=True)
        t.start()
        msgs = u.read_msgs(2000)
        assert [m["type"] for m in msgs] == ["pagefault"] and msgs[0]["address"] == a
        u.zeropage(a, P)
        t.join(5)
        assert not t.is_alive()


def kpage(addr: int) -> tuple[bool, int, int]:
    """(anon_exclusive, mapcount, order) of the page at addr, from /proc/kpageflags and kpagecount."""
    pfn = k.pagemap(addr)[0].pfn
    assert pfn, "no frame: the page is not present or PFNs are hidden"
    flags = k.kpageflags(pfn)
    return k.kpf_anon_exclusive(flags), k.kpagecount(pfn), k.folio_order(pfn, flags)


@pytest.mark.skipif(not frames_visible(), reason="kpageflags/kpagecount need root (CAP_SYS_ADMIN)")
def test_kpageflags_shows_anon_exclusive_through_fork_exit_read_and_write() -> None:
    # measured on 6.18 (issue 18): written 1; after fork 0; child exited 0; parent read 0; parent wrote 1
    with anon(1, fill_byte=1) as a:
        seen = [kpage(a)[:2]]
        with live_child():
            seen.append(kpage(a)[:2])
        seen.append(kpage(a)[:2])
        k.peek(a, 1)
        seen.append(kpage(a)[:2])
        k.poke(a, b"\x02")
        seen.append(kpage(a)[:2])
    assert seen == [(True, 1), (False, 2), (False, 1), (False, 1), (True, 1)]


@pytest.mark.skipif(not frames_visible(), reason="kpageflags/kpagecount need root (CAP_SYS_ADMIN)")
@pytest.mark.skipif(k.thp_enabled() not in ("always", "madvise"), reason="THP disabled")
def test_kpagecount_of_a_thp_pmd_mapped_by_parent_and_child_is_2_on_every_page() -> None:
    a = k.mmap_aligned(k.PMD_SIZE)
    try:
        k.madvise(a, k.PMD_SIZE, k.MADV_HUGEPAGE)
        k.fill(a, k.PMD_SIZE, 1)
        if not k.is_pmd_mapped(a):
            pytest.skip("no huge page allocated (memory fragmented?)")
        assert kpage(a) == kpage(a + 7 * P) == (True, 1, 9)
        with live_child():
            assert kpage(a) == kpage(a + 7 * P) == (False, 2, 9)   # folio_precise_page_mapcount(): 2, not 1024
    finally:
        k.munmap(a, k.PMD_SIZE)


@pytest.mark.skipif(not frames_visible(), reason="kpageflags needs root (CAP_SYS_ADMIN)")
def test_folio_order_of_a_small_page_and_of_the_zero_page_is_0() -> None:
    with anon(2) as a:
        k.poke(a, b"\x01")
        k.peek(a + P, 1)                             # a read fault maps the shared zero page
        assert kpage(a) == (True, 1, 0)
        zero = k.pagemap(a + P)[0]
        assert k.is_zero_page(zero) and k.folio_order(zero.pfn) == 0 and k.kpagecount(zero.pfn) == 0
