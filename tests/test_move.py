"""UFFDIO_MOVE in the simulator: every errno user space can reach, and what success leaves behind."""
from __future__ import annotations

import errno as E

import pytest

from uffdsim import HPAGE_PMD_SIZE, PAGE_SIZE, Machine, UffdError

P = PAGE_SIZE


class World:
    """A process with two 8-page regions, src filled with 0x41 and dst registered for MISSING faults."""

    def __init__(self, pages: int = 8, fill: bool = True, register: bool = True) -> None:
        self.m = Machine()
        self.p = self.m.spawn("main")
        self.src = self.p.mmap(pages)
        self.dst = self.p.mmap(pages)
        if fill:
            self.p.write(self.src, pages * P, 0x41)
        self.uffd = self.p.userfaultfd(features=["move"])
        if register:
            self.uffd.register(self.dst, pages * P, ["missing"])

    def move(self, n: int = 1, dst_off: int = 0, src_off: int = 0, mode: tuple[str, ...] = ()) -> int:
        return self.uffd.move(self.dst + dst_off * P, self.src + src_off * P, n * P, list(mode))

    def fails(self, errno: int, out: int | None, n: int = 1, **kw: object) -> UffdError:
        with pytest.raises(UffdError) as info:
            self.move(n, **kw)  # type: ignore[arg-type]
        assert (info.value.errno, info.value.out) == (errno, out), str(self.m.trail)
        return info.value

    def state(self, addr: int, n: int = 1) -> list[str]:
        return [v.state for v in self.p.observe(addr, n * P)]


@pytest.fixture
def w() -> World:
    return World()


def test_success_moves_the_frame_and_empties_the_source(w: World) -> None:
    before = w.p.observe(w.src, P)[0]
    assert w.move(1) == P
    after = w.p.observe(w.dst, P)[0]
    assert (after.state, after.value, after.pfn) == ("present", 0x41, before.pfn)
    assert w.state(w.src) == ["none"]
    assert after.anon_exclusive and after.mapcount == 1


def test_source_read_after_move_is_a_fresh_zero_page(w: World) -> None:
    w.move(1)
    assert w.p.read(w.src, P) == [0]
    assert w.state(w.src) == ["zero"]


# -- argument validation: the output field is never written --------------------------------
@pytest.mark.parametrize("kw", [
    dict(dst=1, src=0, n=P), dict(dst=0, src=1, n=P), dict(dst=0, src=0, n=P + 1),
    dict(dst=0, src=0, n=0),
])
def test_unaligned_or_empty_arguments_are_einval_unwritten(w: World, kw: dict[str, int]) -> None:
    with pytest.raises(UffdError) as info:
        w.uffd.move(w.dst + kw["dst"], w.src + kw["src"], kw["n"])
    assert (info.value.errno, info.value.out) == (E.EINVAL, None)


def test_unknown_mode_bit_is_einval_unwritten(w: World) -> None:
    with pytest.raises(UffdError) as info:
        w.uffd.move(w.dst, w.src, P, 4)
    assert (info.value.errno, info.value.out) == (E.EINVAL, None)


def test_move_before_the_api_handshake_is_einval() -> None:
    m = Machine()
    p = m.spawn("main")
    a, b = p.mmap(1), p.mmap(1)
    uffd = p.userfaultfd(api=False)
    with pytest.raises(UffdError) as info:
        uffd.move(a, b, P)
    assert (info.value.errno, info.value.out) == (E.EINVAL, None)


def test_move_from_a_fork_child_on_the_inherited_fd_is_einval(w: World) -> None:
    child = w.p.fork("c")
    with pytest.raises(UffdError) as info:
        w.uffd.move(w.dst, w.src, P, caller=child)
    assert (info.value.errno, info.value.out) == (E.EINVAL, None)


# -- VMA checks: the negative errno is written ----------------------------------------------
def test_missing_vmas_are_enoent(w: World) -> None:
    with pytest.raises(UffdError) as info:
        w.uffd.move(0x1000, w.src, P)
    assert (info.value.errno, info.value.out) == (E.ENOENT, -E.ENOENT)
    with pytest.raises(UffdError) as info:
        w.uffd.move(w.dst, 0x1000, P, ["allow_src_holes"])
    assert (info.value.errno, info.value.out) == (E.ENOENT, -E.ENOENT)


def test_range_past_the_vma_end_is_einval_even_if_the_start_could_move(w: World) -> None:
    w.fails(E.EINVAL, -E.EINVAL, n=9)
    assert w.state(w.src) == ["present"]


def test_unregistered_destination_is_einval() -> None:
    w = World(register=False)
    w.fails(E.EINVAL, -E.EINVAL)
    other = w.p.userfaultfd(name="other")
    other.register(w.dst, 8 * P)
    w.fails(E.EINVAL, -E.EINVAL)          # registered, but with another userfaultfd


def test_protection_and_mlock_mismatches_are_einval(w: World) -> None:
    w.p.mprotect(w.src, 8 * P, "r")
    w.fails(E.EINVAL, -E.EINVAL)
    w.p.mprotect(w.src, 8 * P, "rw")
    w.p.mlock(w.src, 8 * P)
    w.fails(E.EINVAL, -E.EINVAL)
    w.uffd.unregister(w.dst, 8 * P)       # mlock populates: on a MISSING range it would block
    w.p.mlock(w.dst, 8 * P)
    w.uffd.register(w.dst, 8 * P)
    with pytest.raises(UffdError) as info:
        w.move(1)
    assert info.value.errno == E.EEXIST   # mlock filled dst with pages; both mlocked passes the VMA checks


def test_shared_or_file_source_is_einval() -> None:
    for kind in ({"shared": True}, {"file": "private"}):
        m = Machine()
        p = m.spawn("main")
        src = p.mmap(2, **kind)  # type: ignore[arg-type]
        dst = p.mmap(2)
        p.write(src, P, 1)
        u = p.userfaultfd()
        u.register(dst, 2 * P)
        with pytest.raises(UffdError) as info:
            u.move(dst, src, P)
        assert (info.value.errno, info.value.out) == (E.EINVAL, -E.EINVAL)


# -- per-page checks ------------------------------------------------------------------------
def test_source_hole_is_enoent_and_allow_src_holes_counts_it_as_moved() -> None:
    w = World(fill=False)
    w.p.write(w.src + P, P, 0x42)
    w.fails(E.ENOENT, -E.ENOENT)
    assert w.move(2, mode=("allow_src_holes",)) == 2 * P
    assert w.state(w.dst, 2) == ["none", "present"]


def test_hole_after_progress_returns_eagain_with_the_byte_count(w: World) -> None:
    w.p.madvise(w.src + 2 * P, P, "dontneed")
    w.fails(E.EAGAIN, 2 * P, n=4)
    assert w.state(w.dst, 4) == ["present", "present", "none", "none"]
    w.fails(E.ENOENT, -E.ENOENT, n=2, dst_off=2, src_off=2)


def test_populated_destination_is_eexist_and_wins_over_a_source_hole(w: World) -> None:
    w.uffd.zeropage(w.dst, P)
    w.fails(E.EEXIST, -E.EEXIST)
    w.p.madvise(w.src, P, "dontneed")
    w.fails(E.EEXIST, -E.EEXIST)


def test_fork_makes_pages_busy_and_the_childs_exit_does_not_help(w: World) -> None:
    child = w.p.fork("c")
    w.fails(E.EBUSY, -E.EBUSY)
    child.exit()
    w.fails(E.EBUSY, -E.EBUSY)
    w.p.read(w.src, P)
    w.fails(E.EBUSY, -E.EBUSY)           # a read does not make it exclusive again
    w.p.write(w.src, P, 0x43)            # a write reuses the page and sets anon-exclusive
    assert w.move(1) == P


def test_dontfork_and_wipeonfork_keep_the_source_movable(w: World) -> None:
    for advice in ("dontfork", "wipeonfork"):
        w.p.madvise(w.src, 8 * P, advice)
        w.p.fork(f"c-{advice}")
    assert w.move(8) == 8 * P


def test_ksm_merged_pages_are_busy(w: World) -> None:
    w.p.madvise(w.src, 8 * P, "mergeable")
    assert w.p.ksm_merge() > 0
    err = w.fails(E.EBUSY, -E.EBUSY)
    # the kernel's check is PageAnonExclusive(); it cannot see KSM, and neither does the trail
    assert "folio not anon-exclusive -> EBUSY" in str(err.trail) and "KSM" not in str(err.trail)


def test_pinned_page_is_busy_and_fork_copies_it_for_the_child(w: World) -> None:
    w.p.pin(w.src, P, "buf")
    w.fails(E.EBUSY, -E.EBUSY)
    child = w.p.fork("c")
    assert child.observe(w.src, P)[0].pfn != w.p.observe(w.src, P)[0].pfn
    w.p.unpin("buf")
    assert w.move(1) == P                # the parent's page stayed exclusive


def test_busy_page_after_progress_gives_eagain(w: World) -> None:
    w.p.pin(w.src + 3 * P, P, "buf")
    w.fails(E.EAGAIN, 3 * P, n=8)


def test_guard_marker_source_is_efault_and_destination_eexist(w: World) -> None:
    w.p.madvise(w.src, P, "guard_install")
    w.fails(E.EFAULT, -E.EFAULT)
    w.p.madvise(w.dst + P, P, "guard_install")
    w.fails(E.EEXIST, -E.EEXIST, dst_off=1, src_off=1)


def test_zero_page_moves_without_an_exclusivity_check() -> None:
    w = World(fill=False)
    w.p.read(w.src, P)
    w.p.fork("c")
    assert w.move(1) == P
    assert w.state(w.dst) == ["zero"]


def test_swap_entries_move_as_entries_and_shared_ones_are_busy(w: World) -> None:
    w.p.madvise(w.src, 2 * P, "pageout")
    assert w.state(w.src, 2) == ["swap", "swap"]
    assert w.move(1) == P
    assert w.state(w.dst) == ["swap"]
    assert w.p.read(w.dst, P) == [0x41]
    w.p.fork("c")
    w.fails(E.EBUSY, -E.EBUSY, dst_off=1, src_off=1)


def test_overlapping_ranges_fail_on_the_populated_destination(w: World) -> None:
    w.uffd.register(w.src, 8 * P)
    with pytest.raises(UffdError) as info:
        w.uffd.move(w.src + P, w.src, 2 * P)
    assert (info.value.errno, info.value.out) == (E.EEXIST, -E.EEXIST)


# -- THP ------------------------------------------------------------------------------------
def thp_world(dst_table: bool = False) -> World:
    w = World(pages=1024, fill=False, register=False)
    m, p = w.m, w.p
    w.src = p.mmap(1024, align=HPAGE_PMD_SIZE)
    w.dst = p.mmap(1024, align=HPAGE_PMD_SIZE)
    p.madvise(w.src, 1024 * P, "hugepage")
    p.write(w.src, HPAGE_PMD_SIZE, 0x77)
    w.uffd.register(w.dst, 1024 * P)
    if dst_table:
        w.uffd.zeropage(w.dst + HPAGE_PMD_SIZE - P, P)
    assert m.processes["main"].observe(w.src, P)[0].thp
    return w


def test_aligned_pmd_moves_whole() -> None:
    w = thp_world()
    assert w.uffd.move(w.dst, w.src, HPAGE_PMD_SIZE) == HPAGE_PMD_SIZE
    assert w.p.observe(w.dst, P)[0].thp
    assert "move_pages_huge_pmd" in str(w.m.trail)


def test_destination_page_table_forces_a_split() -> None:
    w = thp_world(dst_table=True)
    with pytest.raises(UffdError) as info:
        w.uffd.move(w.dst, w.src, HPAGE_PMD_SIZE)
    assert (info.value.errno, info.value.out) == (E.EAGAIN, HPAGE_PMD_SIZE - P)
    assert "split_huge_pmd" in str(w.m.trail)
    assert not w.p.observe(w.dst, P)[0].thp


def test_thp_shared_with_a_child_is_busy_before_the_split() -> None:
    w = thp_world()
    w.p.fork("c")
    with pytest.raises(UffdError) as info:
        w.uffd.move(w.dst, w.src, P)
    assert info.value.errno == E.EBUSY


def test_destination_thp_is_eexist() -> None:
    w = thp_world()
    w.p.madvise(w.dst, 1024 * P, "hugepage")
    w.uffd.unregister(w.dst, 1024 * P)
    w.p.write(w.dst, P, 1)
    w.uffd.register(w.dst, 1024 * P)
    with pytest.raises(UffdError) as info:
        w.uffd.move(w.dst, w.src, P)
    assert (info.value.errno, info.value.out) == (E.EEXIST, -E.EEXIST)


# -- wake-ups --------------------------------------------------------------------------------
def test_move_wakes_a_blocked_reader_unless_dontwake(w: World) -> None:
    t = w.p.fault_async("reader", w.dst, write=False)
    u = w.p.fault_async("other", w.dst + P, write=False)
    assert t.blocked and u.blocked
    assert [(m.type, m.addr) for m in w.uffd.read_msgs()] == [("pagefault", w.dst), ("pagefault", w.dst + P)]
    w.move(1)
    assert not t.blocked and t.done
    w.move(1, dst_off=1, src_off=1, mode=("dontwake",))
    assert u.blocked
    w.uffd.wake(w.dst + P, P)
    assert not u.blocked


def test_every_failed_move_explains_itself(w: World) -> None:
    w.p.fork("c")
    err = w.fails(E.EBUSY, -E.EBUSY)
    assert str(err.trail).startswith("userfaultfd_ioctl > userfaultfd_move > move_pages")
    assert str(err.trail).endswith("folio not anon-exclusive -> EBUSY")


def test_overlapping_move_walks_page_by_page_and_sees_its_own_results() -> None:
    w = World(fill=False)
    w.p.write(w.src, P, 0x41)
    w.uffd.register(w.src, 8 * P)
    frame = w.p.observe(w.src, P)[0].pfn
    # dst = src + 1 page: step 0 moves p0 to +1, step 1 finds it there and moves it again to +2
    assert w.uffd.move(w.src + P, w.src, 2 * P) == 2 * P
    views = w.p.observe(w.src, 3 * P)
    assert [v.state for v in views] == ["none", "none", "present"] and views[2].pfn == frame


def test_pending_remove_event_makes_move_eagain_before_argument_checks() -> None:
    m = Machine()
    p = m.spawn("main")
    src, dst = p.mmap(2), p.mmap(2)
    p.write(src, 2 * P, 1)
    uffd = p.userfaultfd(features=["move", "event_remove"])
    uffd.register(dst, 2 * P)
    zapper = p.madvise_async("zapper", dst, P, "dontneed")
    assert zapper.blocked
    with pytest.raises(UffdError) as info:
        uffd.move(dst, src, 0)                  # len 0 would be EINVAL, but the event comes first
    assert (info.value.errno, info.value.out) == (E.EAGAIN, -E.EAGAIN)
    assert [msg.type for msg in uffd.read_msgs()] == ["remove"]
    assert not zapper.blocked and uffd.move(dst, src, 2 * P) == 2 * P


def test_a_vma_boundary_inside_a_thp_splits_its_pmd() -> None:
    w = thp_world()
    w.p.mprotect(w.src, P, "r")                    # VMA split one page into the THP
    assert not any(v.thp for v in w.p.observe(w.src, 2 * P))
    assert [v.value for v in w.p.observe(w.src, 2 * P)] == [0x77, 0x77]
    with pytest.raises(UffdError) as info:
        w.uffd.move(w.dst, w.src, HPAGE_PMD_SIZE)
    assert (info.value.errno, info.value.out) == (E.EINVAL, -E.EINVAL)   # the range now spans two VMAs
