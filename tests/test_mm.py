"""The memory model under the ioctls: faults, COW, fork, KSM, swap, pins, and the other uffd ioctls."""
from __future__ import annotations

import errno as E

import pytest

from uffdsim import PAGE_SIZE, Machine, UffdError

P = PAGE_SIZE


@pytest.fixture
def proc():  # type: ignore[no-untyped-def]
    return Machine().spawn("main")


def test_read_maps_the_zero_page_and_write_a_new_exclusive_page(proc) -> None:  # type: ignore[no-untyped-def]
    a = proc.mmap(2)
    assert proc.read(a, P) == [0]
    assert proc.observe(a, P)[0].state == "zero"
    proc.write(a, P, 7)
    view = proc.observe(a, P)[0]
    assert (view.state, view.value, view.anon_exclusive, view.mapcount) == ("present", 7, True, 1)


def test_cow_after_fork_copies_for_the_writer_and_reuses_for_the_last_sharer(proc) -> None:  # type: ignore[no-untyped-def]
    a = proc.mmap(1)
    proc.write(a, P, 1)
    frame = proc.observe(a, P)[0].pfn
    child = proc.fork("c")
    assert proc.observe(a, P)[0].mapcount == 2 and not proc.observe(a, P)[0].anon_exclusive
    child.write(a, P, 2)                           # the child copies
    assert child.observe(a, P)[0].pfn != frame
    assert proc.observe(a, P)[0].mapcount == 1 and not proc.observe(a, P)[0].anon_exclusive
    proc.write(a, P, 3)                            # the parent reuses: same frame, exclusive again
    view = proc.observe(a, P)[0]
    assert (view.pfn, view.anon_exclusive, view.value) == (frame, True, 3)


def test_ksm_merges_identical_pages_across_processes_and_a_write_breaks_it(proc) -> None:  # type: ignore[no-untyped-def]
    a = proc.mmap(3)
    proc.madvise(a, 3 * P, "mergeable")
    proc.write(a, 2 * P, 5)
    proc.write(a + 2 * P, P, 6)
    assert proc.ksm_merge() == 2
    views = proc.observe(a, 3 * P)
    assert views[0].pfn == views[1].pfn and views[0].ksm and not views[2].ksm
    proc.write(a, P, 5)
    assert not proc.observe(a, P)[0].ksm and proc.observe(a, P)[0].anon_exclusive


def test_swap_round_trip_keeps_content_and_exclusivity(proc) -> None:  # type: ignore[no-untyped-def]
    a = proc.mmap(1)
    proc.write(a, P, 9)
    proc.madvise(a, P, "pageout")
    assert proc.observe(a, P)[0].state == "swap" and proc.observe(a, P)[0].anon_exclusive
    assert proc.read(a, P) == [9]
    assert proc.observe(a, P)[0].anon_exclusive


def test_pageout_leaves_shared_pages_alone(proc) -> None:  # type: ignore[no-untyped-def]
    a = proc.mmap(1)
    proc.write(a, P, 9)
    proc.fork("c")
    proc.madvise(a, P, "pageout")
    assert proc.observe(a, P)[0].state == "present"


def test_madvise_errors(proc) -> None:  # type: ignore[no-untyped-def]
    a = proc.mmap(2)
    proc.mlock(a, 2 * P)
    with pytest.raises(UffdError) as info:
        proc.madvise(a, P, "dontneed")
    assert info.value.errno == E.EINVAL
    with pytest.raises(UffdError) as info:
        proc.madvise(a + 1, P, "dontneed")
    assert info.value.errno == E.EINVAL
    with pytest.raises(UffdError) as info:
        proc.madvise(a, 4 * P, "dontfork")      # runs past the mapping
    assert info.value.errno == E.ENOMEM


def test_access_errors_are_sigsegv_as_efault(proc) -> None:  # type: ignore[no-untyped-def]
    a = proc.mmap(1, prot="r")
    with pytest.raises(UffdError) as info:
        proc.write(a, P, 1)
    assert info.value.errno == E.EFAULT and "SIGSEGV" in info.value.message
    proc.madvise(proc.mmap(1), P, "guard_install")


def test_copy_zeropage_wake_and_writeprotect(proc) -> None:  # type: ignore[no-untyped-def]
    src, dst = proc.mmap(4), proc.mmap(4)
    proc.write(src, 4 * P, 0x33)
    uffd = proc.userfaultfd()
    with pytest.raises(UffdError) as info:
        uffd.copy(dst, src, P)
    assert (info.value.errno, info.value.out) == (E.ENOENT, -E.ENOENT)     # dst not registered
    uffd.register(dst, 4 * P, ["missing", "wp"])
    reader = proc.fault_async("r", dst, write=False)
    assert reader.blocked
    assert uffd.copy(dst, src, P) == P and not reader.blocked
    assert proc.observe(dst, P)[0].value == 0x33 and proc.observe(src, P)[0].state == "present"
    with pytest.raises(UffdError) as info:
        uffd.copy(dst, src, 2 * P)
    assert (info.value.errno, info.value.out) == (E.EEXIST, -E.EEXIST)
    assert uffd.zeropage(dst + P, 3 * P, ["dontwake"]) == 3 * P
    assert [v.state for v in proc.observe(dst, 4 * P)] == ["present", "zero", "zero", "zero"]
    with pytest.raises(UffdError) as info:
        uffd.zeropage(dst, P)
    assert (info.value.errno, info.value.out) == (E.EEXIST, -E.EEXIST)
    uffd.writeprotect(dst, P, True)
    writer = proc.fault_async("w", dst, write=True, value=1)
    assert writer.blocked and [m.wp for m in uffd.read_msgs()][-1]
    uffd.writeprotect(dst, P, False)
    assert not writer.blocked and proc.observe(dst, P)[0].value == 1
    with pytest.raises(UffdError) as info:
        uffd.wake(dst + 1, P)
    assert info.value.errno == E.EINVAL


def test_register_errors(proc) -> None:  # type: ignore[no-untyped-def]
    a = proc.mmap(2)
    uffd = proc.userfaultfd()
    for modes, errno in ((["minor"], E.EINVAL), ([], E.EINVAL)):
        with pytest.raises(UffdError) as info:
            uffd.register(a, 2 * P, modes)
        assert info.value.errno == errno
    uffd.register(a, 2 * P)
    other = proc.userfaultfd()
    with pytest.raises(UffdError) as info:
        other.register(a, P)
    assert info.value.errno == E.EBUSY
    with pytest.raises(UffdError) as info:
        uffd.api()
    assert info.value.errno == E.EINVAL                                    # second handshake


def test_exit_releases_everything(proc) -> None:  # type: ignore[no-untyped-def]
    m = proc.machine
    a = proc.mmap(4)
    proc.write(a, 4 * P, 1)
    proc.pin(a, P, "b")
    proc.exit()
    assert not m.phys.live
    with pytest.raises(UffdError) as info:
        proc.write(a, P, 1)
    assert info.value.errno == E.ESRCH


def test_collapse_of_a_registered_range_needs_every_page_present(proc) -> None:  # type: ignore[no-untyped-def]
    """hpage_collapse_scan_pmd(): a userfaultfd-armed range with an empty page is not collapsed.

    MADV_COLLAPSE says EBUSY (SCAN_EXCEED_NONE_PTE) and the pages stay small; once the
    registered 2 MiB range is fully populated it collapses like any other (6.18, measured).
    """
    n = 512
    src, to = proc.mmap(n, align=2 << 20), proc.mmap(n, align=2 << 20)
    proc.madvise(src, n * P, "nohugepage")
    proc.write(src, n * P, 0x47)
    u = proc.userfaultfd(features=["move"])
    u.register(to, n * P, ["missing"])
    u.move(to, src, (n - 1) * P)
    with pytest.raises(UffdError) as err:
        proc.madvise(to, n * P, "collapse")
    assert err.value.errno == E.EBUSY
    assert proc.observe(to, P)[0].order == 0
    u.move(to + (n - 1) * P, src + (n - 1) * P, P)
    proc.madvise(to, n * P, "collapse")
    assert proc.observe(to, P)[0].order == 9
