"""MADV_POPULATE_WRITE in the simulator: the write fault the book recommends instead of a dummy store."""
from __future__ import annotations

import pytest

from uffdsim import PAGE_SIZE as P, Machine, UffdError


def _shared_page() -> tuple[Machine, object, object, int]:
    m = Machine()
    p = m.spawn("main")
    src = p.mmap(1)
    p.write(src, P, 0x41)
    child = p.fork("child")
    return m, p, child, src


def test_populate_write_copies_a_page_shared_with_a_live_child_and_keeps_the_data() -> None:
    m, p, child, src = _shared_page()
    before = p.observe(src, P)[0]
    p.madvise(src, P, "populate_write")
    after = p.observe(src, P)[0]
    assert after.pfn != before.pfn and after.value == 0x41 and after.anon_exclusive
    assert child.observe(src, P)[0].pfn == before.pfn


def test_populate_write_reuses_the_frame_once_the_child_has_exited() -> None:
    m, p, child, src = _shared_page()
    before = p.observe(src, P)[0]
    child.exit()
    assert not before.anon_exclusive
    p.madvise(src, P, "populate_write")
    after = p.observe(src, P)[0]
    assert after.pfn == before.pfn and after.value == 0x41 and after.anon_exclusive


def test_populate_write_refuses_a_read_only_mapping_and_stops_at_a_hole() -> None:
    m = Machine()
    p = m.spawn("main")
    ro = p.mmap(1, prot="r")
    with pytest.raises(UffdError) as err:
        p.madvise(ro, P, "populate_write")
    assert err.value.name == "EINVAL"
    a = p.mmap(3)
    p.munmap(a + P, P)
    with pytest.raises(UffdError) as err:
        p.madvise(a, 3 * P, "populate_write")
    assert err.value.name == "ENOMEM"
    assert [v.state for v in p.observe(a, P)] == ["present"]
    assert [v.state for v in p.observe(a + 2 * P, P)] == ["none"]
