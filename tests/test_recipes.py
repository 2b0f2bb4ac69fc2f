"""uffdsim.recipes.move_range: the retry loop a careful UFFDIO_MOVE caller writes.

Every branch on the simulator (holes, populated destination pages, busy pages, partial progress,
pending events, fatal errors), a property test over random ranges, and one test on the running
kernel (skipped where userfaultfd is unavailable).
"""
from __future__ import annotations

import errno as E
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uffdsim import PAGE_SIZE, Machine, UffdError
from kernel_helpers import live_child
from uffdsim.recipes import KINDS, MoveRangeError, MoveReport, copy_then_dontneed, copy_unless_pinned, move_range

P = PAGE_SIZE


class World:
    """A process with src (filled with 0x41) and dst (registered MISSING) regions of ``pages`` pages."""

    def __init__(self, pages: int = 6, features: tuple[str, ...] = ("move",)) -> None:
        self.m = Machine()
        self.p = self.m.spawn("main")
        self.pages = pages
        self.src = self.p.mmap(pages)
        self.dst = self.p.mmap(pages)
        self.p.write(self.src, pages * P, 0x41)
        self.uffd = self.p.userfaultfd(features=list(features))
        self.uffd.register(self.dst, pages * P, ["missing"])

    def run(self, **kw: Any) -> MoveReport:
        return move_range(self.uffd, self.dst, self.src, self.pages * P, **kw)

    def states(self, base: int, proc: Any = None) -> list[str]:
        return [v.state for v in (proc or self.p).observe(base, self.pages * P)]

    def pfns(self, base: int) -> list[int | None]:
        return [v.pfn for v in self.p.observe(base, self.pages * P)]

    def hole(self, page: int) -> None:
        self.p.madvise(self.src + page * P, P, "dontneed")

    def populate_dst(self, page: int) -> None:
        self.uffd.zeropage(self.dst + page * P, P)


def test_a_movable_range_takes_one_ioctl() -> None:
    w = World()
    before = w.pfns(w.src)
    r = w.run()
    assert r.counts() == {"moved": 6, "copied": 0, "skipped-hole": 0, "skipped-exists": 0}
    assert r.ioctls == 1 and r.fallbacks == 0 and r.done == 6 * P
    assert w.pfns(w.dst) == before and w.states(w.src) == ["none"] * 6


def test_partial_progress_continues_from_the_returned_count() -> None:
    w = World()
    w.hole(3)
    r = w.run()
    # EAGAIN with move=3 pages, then ENOENT at page 3, the hole retried, then the rest
    assert r.log[0] == "MOVE 6p at +0: EAGAIN, out=12288"
    assert r.pages("moved") == [0, 1, 2, 4, 5] and r.pages("skipped-hole") == [3]
    assert w.states(w.dst) == ["present"] * 3 + ["none"] + ["present"] * 2


def test_a_hole_is_retried_with_allow_src_holes_and_wakes_a_waiter() -> None:
    w = World()
    w.hole(2)
    t = w.p.fault_async("t", w.dst + 2 * P, write=False)
    assert t.blocked and len(w.uffd.read_msgs()) == 1
    r = w.run(holes="allow")
    assert "MOVE 1p +holes at +2: ok, 4096 bytes" in r.log
    assert r.pages("skipped-hole") == [2]
    # woken by the hole "move", the thread finds the page still missing and faults again
    assert t.blocked and [m.addr for m in w.uffd.read_msgs()] == [w.dst + 2 * P]


def test_skip_mode_steps_over_a_hole_without_waking() -> None:
    w = World()
    w.hole(2)
    t = w.p.fault_async("t", w.dst + 2 * P, write=False)
    w.uffd.read_msgs()
    r = w.run(holes="skip")
    assert r.pages("skipped-hole") == [2]
    assert t.blocked and w.uffd.read_msgs() == []


def test_raise_mode_reports_what_was_done_before_the_hole() -> None:
    w = World()
    w.hole(4)
    with pytest.raises(MoveRangeError) as info:
        w.run(holes="raise")
    err = info.value
    assert isinstance(err, UffdError) and (err.errno, err.out) == (E.ENOENT, -E.ENOENT)
    assert err.offset == 4 * P and err.report is not None and err.report.pages("moved") == [0, 1, 2, 3]


def test_a_missing_source_vma_is_not_taken_for_a_hole() -> None:
    w = World()
    w.p.munmap(w.src, w.pages * P)
    with pytest.raises(MoveRangeError) as info:
        w.run()
    assert info.value.errno == E.ENOENT and info.value.report.done == 0
    assert info.value.report.log[-2] == "MOVE 1p +holes at +0: ENOENT, out=-2"
    with pytest.raises(MoveRangeError):
        w.run(allow_src_holes=True)


def test_allow_src_holes_up_front_counts_holes_as_moved() -> None:
    w = World()
    w.hole(1)
    r = w.run(allow_src_holes=True)
    assert r.ioctls == 1 and r.counts()["moved"] == 6
    assert w.states(w.dst)[1] == "none"


def test_a_populated_destination_page_is_skipped_and_woken() -> None:
    w = World()
    t = w.p.fault_async("t", w.dst + 1 * P, write=False)
    w.uffd.copy(w.dst + P, w.src + P, P, ["dontwake"])      # resolved, but the waiter still sleeps
    assert t.blocked
    r = w.run()
    assert r.pages("skipped-exists") == [1] and "WAKE at +1" in r.log
    assert not t.blocked
    assert w.states(w.src)[1] == "present"                 # the source page stays where it was


def test_dontwake_leaves_a_waiter_on_a_populated_page_asleep() -> None:
    w = World()
    t = w.p.fault_async("t", w.dst + 3 * P, write=False)
    w.uffd.copy(w.dst + 3 * P, w.src + 3 * P, P, ["dontwake"])
    r = w.run(dontwake=True)
    assert r.pages("skipped-exists") == [3] and not any(line.startswith("WAKE") for line in r.log)
    assert t.blocked


def busy_middle_page(w: World, page: int) -> Any:
    """Fork a child, then let the parent write every other page: only ``page`` stays COW-shared."""
    child = w.p.fork("c")
    for i in range(w.pages):
        if i != page:
            w.p.write(w.src + i * P, P, 0x50 + i)
    return child


def test_a_busy_page_in_the_middle_is_copied_then_dropped() -> None:
    w = World()
    child = busy_middle_page(w, 2)
    shared_pfn = w.pfns(w.src)[2]
    before = w.pfns(w.src)
    r = w.run(fallback=copy_then_dontneed)          # the caller knows: no page of src is pinned
    assert r.pages("copied") == [2] and r.pages("moved") == [0, 1, 3, 4, 5] and r.fallbacks == 1
    after = w.pfns(w.dst)
    assert [after[i] == before[i] for i in range(6)] == [True, True, False, True, True, True]
    assert w.p.observe(w.dst + 2 * P, P)[0].value == 0x41        # same bytes, new frame
    assert w.states(w.src) == ["none"] * 6                     # the fallback dropped the source
    assert child.observe(w.src + 2 * P, P)[0].pfn == shared_pfn  # the child keeps its page


def test_without_a_fallback_ebusy_is_raised_with_the_report() -> None:
    w = World()
    busy_middle_page(w, 2)
    with pytest.raises(MoveRangeError) as info:
        w.run(fallback=None)
    assert (info.value.errno, info.value.out, info.value.offset) == (E.EBUSY, -E.EBUSY, 2 * P)
    assert info.value.report.pages("moved") == [0, 1]


def test_by_default_a_busy_page_is_not_copied() -> None:
    """EBUSY does not say "pinned": the default raises, so a pinned page stays where its pin is (issue 21)."""
    w = World()
    w.p.pin(w.src + 4 * P, P, "io")
    pinned_pfn = w.pfns(w.src)[4]
    with pytest.raises(MoveRangeError) as info:
        w.run()
    assert (info.value.errno, info.value.offset, info.value.report.fallbacks) == (E.EBUSY, 4 * P, 0)
    assert info.value.report.pages("moved") == [0, 1, 2, 3]
    assert w.pfns(w.src)[4] == pinned_pfn and w.states(w.dst)[4] == "none"   # nothing copied, nothing zapped


def test_copying_a_pinned_page_detaches_it_from_its_pin() -> None:
    """Why the default changed: copy-and-zap leaves the pin holder on a frame nobody maps any more."""
    w = World()
    w.p.pin(w.src + 4 * P, P, "io")
    r = w.run(fallback=copy_then_dontneed)
    assert r.pages("copied") == [4]
    assert w.p.pins["io"][0].data[0] == 0x41      # the pin holder keeps the old frame
    assert w.p.observe(w.dst + 4 * P, P)[0].pfn != w.p.pins["io"][0].pfn   # dst maps a new frame
    assert w.states(w.src)[4] == "none"                                     # nobody maps the pinned one


def test_copy_unless_pinned_copies_a_shared_page_and_stops_at_a_pinned_one() -> None:
    w = World()
    busy_middle_page(w, 1)                          # COW-shared with a child: safe to copy
    w.p.pin(w.src + 4 * P, P, "io")                 # pinned: the caller's own record says so
    pins = {w.src + 4 * P}
    with pytest.raises(MoveRangeError) as info:
        w.run(fallback=copy_unless_pinned(lambda addr, size: addr in pins))
    rep_ = info.value.report
    assert rep_.pages("copied") == [1] and rep_.pages("moved") == [0, 2, 3]
    assert (info.value.errno, info.value.offset) == (E.EBUSY, 4 * P)
    assert w.states(w.src)[4] == "present" and w.states(w.dst)[4] == "none"


def test_a_fallback_may_make_the_page_movable_and_ask_for_a_retry() -> None:
    w = World()
    busy_middle_page(w, 2)

    def write_then_retry(uffd: Any, dst: int, src: int, size: int, dontwake: bool) -> str:
        value = uffd.owner.read(src, size)[0]
        uffd.owner.write(src, size, value)           # a dummy store: COW gives us our own page
        return "retry"

    r = w.run(fallback=write_then_retry)
    assert r.counts()["moved"] == 6 and r.counts()["copied"] == 0 and r.fallbacks == 1
    assert w.p.observe(w.dst + 2 * P, P)[0].value == 0x41


def test_a_retry_that_does_not_help_gives_up() -> None:
    w = World()
    busy_middle_page(w, 2)
    with pytest.raises(MoveRangeError) as info:
        w.run(fallback=lambda *args: "retry")
    assert info.value.errno == E.EBUSY and info.value.offset == 2 * P


def test_a_pending_event_is_read_then_the_move_retried() -> None:
    w = World(features=("move", "event_remove"))
    zapper = w.p.madvise_async("zapper", w.dst, P, "dontneed")
    assert zapper.blocked
    r = w.run()
    assert r.log[:2] == ["MOVE 6p at +0: EAGAIN, out=-11", "read events"]
    assert [m.type for m in r.events] == ["remove"] and not zapper.blocked
    assert r.counts()["moved"] == 6


def test_a_custom_event_reader_is_called() -> None:
    w = World(features=("move", "event_remove"))
    w.p.madvise_async("zapper", w.dst, P, "dontneed")
    seen: list[Any] = []
    r = w.run(read_events=lambda: seen.extend(w.uffd.read_msgs()))
    assert [m.type for m in seen] == ["remove"] and r.events == [] and r.done == 6 * P


@pytest.mark.parametrize("setup, errno, out, fallbacks", [
    ("unregistered", E.ENOENT, -E.ENOENT, 1),  # MOVE: EINVAL; the COPY fallback: ENOENT (no uffd VMA)
    ("unaligned", E.EINVAL, None, 0),          # bad arguments: refused before any ioctl, nothing to fall back for
])
def test_errors_the_fallback_cannot_fix_either_are_raised(setup: str, errno: int, out: int | None,
                                                         fallbacks: int) -> None:
    w = World()
    dst, src = w.dst, w.src
    if setup == "unregistered":
        w.uffd.unregister(w.dst, w.pages * P)
    else:
        src += 1
    with pytest.raises(MoveRangeError) as info:
        move_range(w.uffd, dst, src, w.pages * P, fallback=copy_then_dontneed)
    assert (info.value.errno, info.value.out) == (errno, out)
    assert info.value.report.done == 0 and info.value.report.fallbacks == fallbacks


def test_an_errno_not_handled_specifically_falls_back_instead_of_aborting() -> None:
    """A read-only source VMA: MOVE says EINVAL; the recipe narrows to one page, then copies (issue 11)."""
    w = World()
    w.p.mprotect(w.src, w.pages * P, "r")
    r = move_range(w.uffd, w.dst, w.src, w.pages * P, fallback=copy_then_dontneed)
    assert r.pages("copied") == list(range(w.pages)) and r.fallback_reasons() == dict.fromkeys(range(w.pages), "EINVAL")
    assert "  pages 0-5    copied (MOVE failed: EINVAL)" in str(r).splitlines()


def test_narrowing_keeps_the_pages_before_a_vma_boundary_zero_copy() -> None:
    """EINVAL for the range (src crosses into a read-only VMA): page by page, the first pages move."""
    w = World()
    w.p.mprotect(w.src + 4 * P, 2 * P, "r")
    r = move_range(w.uffd, w.dst, w.src, w.pages * P, fallback=copy_then_dontneed)
    assert r.pages("moved") == [0, 1, 2, 3] and r.pages("copied") == [4, 5]
    assert r.fallback_reasons() == {4: "EINVAL", 5: "EINVAL"}


def test_bad_holes_argument_is_a_value_error() -> None:
    w = World()
    with pytest.raises(ValueError):
        w.run(holes="maybe")


# -- a scripted uffd for the branches the simulator cannot easily reach ------------------------

class Scripted:
    """Answers MOVE/COPY from a script: each item is a byte count or an (errno, out) failure."""

    def __init__(self, moves: list[Any], copies: list[Any] | None = None) -> None:
        self.moves, self.copies = list(moves), list(copies or [])
        self.calls: list[tuple[str, int, int]] = []
        self.reads = 0

    def _answer(self, script: list[Any]) -> int:
        item = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(item, tuple):
            raise UffdError(item[0], "scripted", out=item[1])
        return item

    def move(self, dst: int, src: int, length: int, mode: int = 0) -> int:
        self.calls.append(("move", dst, length))
        return self._answer(self.moves)

    def copy(self, dst: int, src: int, length: int, mode: int = 0) -> int:
        self.calls.append(("copy", dst, length))
        return self._answer(self.copies)

    def wake(self, start: int, length: int) -> None:
        self.calls.append(("wake", start, length))

    def read_msgs(self) -> list[Any]:
        self.reads += 1
        return []


def test_eagain_with_an_unwritten_field_is_treated_as_a_pending_event() -> None:
    u = Scripted([(E.EAGAIN, None), 2 * P])      # kernels before 6.15 left the field unwritten
    r = move_range(u, 0x10000, 0x20000, 2 * P)
    assert u.reads == 1 and r.counts()["moved"] == 2


def test_an_event_that_never_clears_gives_up() -> None:
    u = Scripted([(E.EAGAIN, -E.EAGAIN)])
    with pytest.raises(MoveRangeError) as info:
        move_range(u, 0x10000, 0x20000, P, max_retries=3)
    assert info.value.errno == E.EAGAIN and u.reads == 3


def test_copy_fallback_losing_a_race_is_reported_as_existing() -> None:
    u = Scripted([(E.EBUSY, -E.EBUSY), P], copies=[(E.EEXIST, -E.EEXIST)])
    r = move_range(u, 0x10000, 0x20000, 2 * P, fallback=lambda uf, d, s, n, w: (uf.copy(d, s, n), "copied")[1])
    assert r.pages("skipped-exists") == [0] and r.pages("moved") == [1]


def test_unexpected_errnos_fall_back_with_their_reason() -> None:
    for errno in (E.EINTR, E.ENOMEM, E.EFAULT, E.ESRCH, E.EINVAL, E.EPERM):
        u = Scripted([(errno, -errno)], copies=[P])
        r = move_range(u, 0x10000, 0x20000, 2 * P,
                       fallback=lambda uf, d, s, n, w: (uf.copy(d, s, n), "copied")[1])
        assert r.pages("copied") == [0, 1] and r.fallback_reasons() == {0: E.errorcode[errno], 1: E.errorcode[errno]}
        assert [c[0] for c in u.calls] == ["move", "move", "copy", "move", "copy"]   # narrowed first
    u = Scripted([(E.EFAULT, -E.EFAULT)])
    with pytest.raises(MoveRangeError) as info:                 # no fallback: raised as before
        move_range(u, 0x10000, 0x20000, P, fallback=None)
    assert info.value.errno == E.EFAULT


def test_report_text_lists_runs() -> None:
    r = MoveReport(0, 0, 4 * P)
    r.add("moved", 0, 2 * P)
    r.add("moved", 2 * P, P)
    r.add("copied", 3 * P, P)
    assert str(r).splitlines() == ["4 of 4 pages handled with 0 ioctls (moved 3, copied 1)",
                                   "  pages 0-2    moved", "  page  3      copied"]


# -- property: whatever the mix, every page ends up where the report says ----------------------

SITUATIONS = ("present", "zero", "hole", "busy", "dst-populated")
EXPECTED_KIND = {"present": "moved", "zero": "moved", "hole": "skipped-hole", "busy": "copied",
                 "dst-populated": "skipped-exists"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(SITUATIONS), min_size=1, max_size=10))
def test_every_page_is_accounted_for(situations: list[str]) -> None:
    m = Machine()
    p = m.spawn("main")
    n = len(situations)
    src, dst = p.mmap(n), p.mmap(n)
    uffd = p.userfaultfd(features=["move"])
    uffd.register(dst, n * P, ["missing"])
    for i, what in enumerate(situations):
        page = src + i * P
        if what == "zero":
            p.read(page, P)
        elif what != "hole":
            p.write(page, P, 0x10 + i)
        if what == "dst-populated":
            uffd.zeropage(dst + i * P, P)
    if "busy" in situations:                        # busy = COW-shared with a child (never pinned:
        p.fork("child")                             # the copy fallback must not meet a pin)
        for i, what in enumerate(situations):
            if what in ("present", "dst-populated"):
                p.write(src + i * P, P, 0x10 + i)   # the parent's own page again
    before_src = p.observe(src, n * P)
    before_dst = p.observe(dst, n * P)
    r = move_range(uffd, dst, src, n * P, fallback=copy_then_dontneed)
    kinds = {i: k for k in KINDS for i in r.pages(k)}
    assert [kinds[i] for i in range(n)] == [EXPECTED_KIND[s] for s in situations]
    assert r.done == n * P and r.ioctls <= 2 * n + 1
    after_src, after_dst = p.observe(src, n * P), p.observe(dst, n * P)
    for i, what in enumerate(situations):
        kind = kinds[i]
        if kind == "moved":
            assert (after_dst[i].state, after_dst[i].pfn) == (before_src[i].state, before_src[i].pfn)
            assert after_src[i].state == "none"
        elif kind == "copied":
            assert after_dst[i].value == before_src[i].value and after_dst[i].pfn != before_src[i].pfn
            assert after_src[i].state == "none"
        elif kind == "skipped-hole":
            assert after_dst[i].state == after_src[i].state == "none"
        else:
            assert after_dst[i] == before_dst[i] and after_src[i] == before_src[i]


# -- the running kernel ------------------------------------------------------------------------

def kernel_or_skip() -> Any:
    try:
        from uffdsim.backends.kernel import sys as k
    except Exception as err:  # pragma: no cover - import problems on exotic platforms
        pytest.skip(f"kernel backend unavailable: {err}")
    ok, reason = k.userfaultfd_available()
    if not ok:
        pytest.skip(reason)
    return k


@contextmanager
def kernel_ranges(k: Any, n: int) -> Iterator[tuple[int, int, Any]]:
    """``n`` pages at src and at dst on the running kernel, dst registered (MISSING) with a
    MOVE-capable userfaultfd; everything unmapped and closed afterwards."""
    kp = k.PAGE_SIZE
    src, dst = k.mmap(n * kp), k.mmap(n * kp)
    uffd = k.Userfaultfd.open()
    try:
        uffd.api(k.UFFD_FEATURE_MOVE)
        uffd.register(dst, n * kp)
        yield src, dst, uffd
    finally:
        uffd.close()
        k.munmap(src, n * kp)
        k.munmap(dst, n * kp)


@pytest.mark.kernel
def test_move_range_on_the_running_kernel() -> None:
    """A messy range on the real thing: a hole, a populated dst page, a COW-shared page."""
    k = kernel_or_skip()
    kp = k.PAGE_SIZE
    n = 6
    with kernel_ranges(k, n) as (src, dst, uffd):
        k.fill(src, n * kp, 0x41)
        k.madvise(src + 1 * kp, kp, k.MADV_DONTNEED)            # page 1: a hole
        uffd.zeropage(dst + 3 * kp, kp)                         # page 3: dst already populated
        with live_child():
            for i in (0, 2, 3, 5):                              # the parent's write makes these
                k.fill(src + i * kp, kp, 0x50 + i)              # its own again; page 4 stays shared
            shared = k.pagemap(src + 4 * kp)[0].pfn
            r = move_range(uffd, dst, src, n * kp, page_size=kp, fallback=copy_then_dontneed)
        assert r.pages("moved") == [0, 2, 5]
        assert r.pages("skipped-hole") == [1]
        assert r.pages("skipped-exists") == [3]
        assert r.pages("copied") == [4]
        got = [k.peek(dst + i * kp, 1) for i in (0, 2, 4, 5)]
        assert got == [b"\x50", b"\x52", b"\x41", b"\x55"]
        assert not any(e.present for i, e in enumerate(k.pagemap(src, n)) if i != 3)
        assert k.pagemap(dst + 4 * kp)[0].pfn != shared or shared == 0


def test_a_hole_retry_that_meets_something_else_asks_move_again() -> None:
    # ENOENT, then the 1-page retry finds an event pending; MOVE is asked again and succeeds
    u = Scripted([(E.ENOENT, -E.ENOENT), (E.EAGAIN, -E.EAGAIN), P])
    r = move_range(u, 0x10000, 0x20000, P)
    assert r.counts()["moved"] == 1 and [c[0] for c in u.calls] == ["move"] * 3


def test_fallback_errors() -> None:
    # the fallback meets a pending event: events are read, MOVE retried
    u = Scripted([(E.EBUSY, -E.EBUSY), P], copies=[(E.EAGAIN, -E.EAGAIN)])
    r = move_range(u, 0x10000, 0x20000, P, fallback=lambda uf, d, s, n, w: (uf.copy(d, s, n), "copied")[1])
    assert u.reads == 1 and r.counts()["moved"] == 1
    # anything else from the fallback is raised
    u = Scripted([(E.EBUSY, -E.EBUSY)], copies=[(E.EFAULT, -E.EFAULT)])
    with pytest.raises(MoveRangeError) as info:
        move_range(u, 0x10000, 0x20000, P, fallback=lambda uf, d, s, n, w: (uf.copy(d, s, n), "copied")[1])
    assert info.value.errno == E.EFAULT and info.value.report.fallbacks == 1


def test_a_fallback_may_name_its_own_kind() -> None:
    w = World()
    busy_middle_page(w, 1)
    r = w.run(fallback=lambda uf, d, s, n, dw: (copy_then_dontneed(uf, d, s, n, dw), "rescued")[1])
    assert r.pages("rescued") == [1] and r.counts()["rescued"] == 1 and r.counts()["copied"] == 0


@pytest.mark.kernel
def test_an_unhandled_errno_falls_back_on_the_running_kernel() -> None:
    """A read-only source tail: MOVE fails with EINVAL there; those pages are copied, not aborted."""
    k = kernel_or_skip()
    kp = k.PAGE_SIZE
    n = 4
    with kernel_ranges(k, n) as (src, dst, uffd):
        for i in range(n):
            k.fill(src + i * kp, kp, 0x60 + i)
        k.mprotect(src + 2 * kp, 2 * kp, k.PROT_READ)           # a second VMA, not writable
        r = move_range(uffd, dst, src, n * kp, page_size=kp, fallback=copy_then_dontneed)
        assert r.pages("moved") == [0, 1] and r.pages("copied") == [2, 3]
        assert r.fallback_reasons() == {2: "EINVAL", 3: "EINVAL"}
        assert [k.peek(dst + i * kp, 1) for i in range(n)] == [bytes([0x60 + i]) for i in range(n)]
        assert not any(e.present for e in k.pagemap(src, n))
