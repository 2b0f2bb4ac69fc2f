"""Honest trails (issue 11): an access that does not fault records no fault path, and what a woken
thread does after the wake-up is its own trail, never part of the ioctl's."""
from __future__ import annotations

from uffdsim import Machine, PAGE_SIZE as P


def setup() -> tuple[Machine, object, object, int, int]:
    m = Machine()
    p = m.spawn("main")
    src, dst = p.mmap(1), p.mmap(1)
    p.write(src, P, 0x41)
    uffd = p.userfaultfd(features=["move"])
    uffd.register(dst, P)
    return m, p, uffd, src, dst


def test_copy_from_a_present_source_page_does_not_fault() -> None:
    m, p, uffd, src, dst = setup()
    uffd.copy(dst, src, P)
    assert "handle_mm_fault" not in m.trail.path, str(m.trail)
    assert p.peek(dst) == 0x41


def test_copy_from_an_absent_source_page_faults_it_in() -> None:
    m, p, uffd, src, dst = setup()
    hole = p.mmap(1)
    uffd.copy(dst, hole, P)
    assert m.trail.path[m.trail.path.index("handle_mm_fault") + 1] == "do_anonymous_page", str(m.trail)


def test_reading_a_present_page_records_no_fault() -> None:
    m, p, uffd, src, dst = setup()
    p.read(src, P)
    assert "handle_mm_fault" not in m.trail.path
    p.write(src, P, 0x42)                               # writable already: no fault either
    assert "handle_mm_fault" not in m.trail.path
    p.read(p.mmap(1), P)                                # a never-touched page: a real fault
    assert "handle_mm_fault" in m.trail.path


def test_the_woken_threads_retry_is_its_own_trail() -> None:
    m, p, uffd, src, dst = setup()
    t = p.fault_async("reader", dst, write=True, value=0x99)
    assert t.blocked
    uffd.move(dst, src, P)
    ioctl = m.trail
    assert "woke 1 blocked thread(s)" in ioctl.notes
    assert "handle_mm_fault" not in ioctl.path, f"the retry leaked into the ioctl's trail: {ioctl}"
    assert [w.op for w in ioctl.woken] == ["thread reader retries its fault"]
    assert t.trail is ioctl.woken[0] and t.done
    assert str(ioctl).split(" || ")[1] == "then, in its own trail, thread reader retries its fault: no fault"
    assert "handle_mm_fault" not in str(ioctl).split(" || ")[0] and ioctl.to_dict()["woken"][0]["op"] == t.trail.op
    assert p.peek(dst) == 0x99


def test_a_woken_thread_that_faults_again_shows_it_in_its_own_trail() -> None:
    m, p, uffd, src, dst = setup()
    t = p.fault_async("writer", dst, write=True, value=0x77)
    uffd.zeropage(dst, P)                               # the zero page: the retried write must COW
    sub = m.trail.woken[0]
    assert sub.path[:1] == ["handle_mm_fault"] and "handle_mm_fault" not in m.trail.path
    assert str(m.trail).endswith("|| then, in its own trail, thread writer retries its fault: " + str(sub))
    assert t.done and p.peek(dst) == 0x77


def test_a_steps_decision_leaves_out_the_woken_threads() -> None:
    from uffdsim.book import step_decision
    rec = {"trail": "userfaultfd_ioctl > userfaultfd_move > move_pages: moved 1 page(s)"
                    " || then, in its own trail, thread t0 retries its fault: no fault"}
    assert step_decision(rec) == "moved 1 page(s)"
