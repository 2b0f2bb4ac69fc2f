"""Hypothesis state machine: random system calls and moves, with the model's invariants after each."""
from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from uffdsim import PAGE_SIZE, Machine, UffdError
from uffdsim.mm.pagetable import HugePmd, PresentPte, PteTable, SwapPte

P = PAGE_SIZE
N = 6
pages = st.integers(0, N - 1)
values = st.integers(1, 255)


def mapping_counts(machine: Machine) -> tuple[Counter, Counter, Counter]:
    """(PTE mappings per (folio id, page), PMD mappings per folio id, swap PTEs per slot) over every live mm."""
    ptes: Counter = Counter()
    pmds: Counter = Counter()
    swaps: Counter = Counter()
    for proc in machine.live_processes():
        for pmd in proc.mm.pt.pmds.values():
            if isinstance(pmd, HugePmd):
                pmds[id(pmd.folio)] += 1
                continue
            assert isinstance(pmd, PteTable)
            for pte in pmd.ptes.values():
                if isinstance(pte, PresentPte):
                    ptes[(id(pte.folio), pte.idx)] += 1
                elif isinstance(pte, SwapPte):
                    swaps[pte.entry] += 1
    return ptes, pmds, swaps


class MoveMachine(RuleBasedStateMachine):
    """Two 6-page regions, a fork child now and then, and UFFDIO_MOVE/COPY between them."""

    @initialize()
    def setup(self) -> None:
        self.m = Machine()
        self.p = self.m.spawn("main")
        self.src = self.p.mmap(N)
        self.dst = self.p.mmap(N)
        self.uffd = self.p.userfaultfd(features=["move"])
        self.uffd.register(self.dst, N * P)
        self.children = 0

    @rule(i=pages, n=st.integers(1, 3), v=values)
    def write(self, i: int, n: int, v: int) -> None:
        self.p.write(self.src + i * P, min(n, N - i) * P, v)

    @rule(i=pages)
    def read(self, i: int) -> None:
        self.p.read(self.src + i * P, P)

    @rule(i=pages, advice=st.sampled_from(["dontneed", "pageout", "mergeable", "dontfork", "dofork", "free"]))
    def madvise(self, i: int, advice: str) -> None:
        self.p.madvise(self.src + i * P, P, advice)

    @precondition(lambda self: len(self.m.live_processes()) < 3)
    @rule()
    def fork(self) -> None:
        self.children += 1
        self.p.fork(f"c{self.children}")

    @precondition(lambda self: len(self.m.live_processes()) > 1)
    @rule(write=st.booleans())
    def child_acts(self, write: bool) -> None:
        child = self.m.live_processes()[-1]
        if write:
            try:
                child.write(self.src, P, 0x99)
            except UffdError:
                pass        # the region may not exist in a child after MADV_DONTFORK
        else:
            child.exit()

    @rule()
    def ksm(self) -> None:
        self.p.ksm_merge()

    @rule(i=pages)
    def pin_cycle(self, i: int) -> None:
        self.p.pin(self.src + i * P, P, "b")
        self.p.unpin("b")

    @rule(d=pages, s=pages, n=st.integers(1, 3), holes=st.booleans())
    def move(self, d: int, s: int, n: int, holes: bool) -> None:
        n = min(n, N - d, N - s)
        src, dst = self.src + s * P, self.dst + d * P
        before_src = self.p.observe(src, n * P)
        before_frames = self.live_frames()
        try:
            moved = self.uffd.move(dst, src, n * P, ["allow_src_holes"] if holes else [])
        except UffdError as err:
            moved = err.out if err.out and err.out > 0 else 0
        k = moved // P
        after_dst = self.p.observe(dst, k * P) if k else []
        for old, new in zip(before_src[:k], after_dst):
            # the data and the frame travel; the source slot is empty afterwards
            assert (new.state, new.value, new.pfn) == (old.state, old.value, old.pfn)
        assert all(v.state == "none" for v in self.p.observe(src, k * P)) if k else True
        assert self.live_frames() == before_frames          # no frame allocated or freed

    @rule(d=pages, s=pages)
    def copy_then_dontneed(self, d: int, s: int) -> None:
        try:
            self.uffd.copy(self.dst + d * P, self.src + s * P, P)
        except UffdError:
            return
        self.p.madvise(self.src + s * P, P, "dontneed")

    @rule(d=pages)
    def empty_dst(self, d: int) -> None:
        self.p.madvise(self.dst + d * P, P, "dontneed")

    def live_frames(self) -> set[int]:
        return set(self.m.phys.live)

    @invariant()
    def mapcounts_match_the_page_tables(self) -> None:
        ptes, pmds, swaps = mapping_counts(self.m)
        seen = set()
        for proc in self.m.live_processes():
            for pmd in proc.mm.pt.pmds.values():
                entries = [pmd] if isinstance(pmd, HugePmd) else list(pmd.ptes.values())
                for e in entries:
                    if isinstance(e, (PresentPte, HugePmd)) and not e.folio.special:
                        seen.add(id(e.folio))
                        f = e.folio
                        assert not f.freed, "a freed folio is still mapped"
                        assert f.entire_mapcount == pmds[id(f)]
                        for i in range(f.nr):
                            assert f.mapcount[i] == ptes[(id(f), i)], f"page {f.pfn + i}"
        for entry, slot in self.m.swap.slots.items():
            assert slot.count == swaps[entry], f"swap slot {entry}"

    @invariant()
    def anon_exclusive_means_mapped_once(self) -> None:
        for proc in self.m.live_processes():
            for view in proc.observe(self.src, N * P) + proc.observe(self.dst, N * P):
                if view.state == "present" and view.anon_exclusive:
                    assert view.mapcount == 1 and not view.ksm


    def check(self) -> None:
        """Every invariant, as Hypothesis runs them after each rule."""
        self.mapcounts_match_the_page_tables()
        self.anon_exclusive_means_mapped_once()


# Derandomized (the profile in conftest.py): the same sequences on every run.  Open-ended
# exploration of this machine with random seeds: benchmarks/explore_invariants.py.
TestMoveMachine = MoveMachine.TestCase
TestMoveMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])


def test_settings_are_derandomized() -> None:
    """CI cannot land or fail by chance: the state machine runs the same examples every time."""
    assert TestMoveMachine.settings.derandomize and TestMoveMachine.settings.database is None


def test_swap_cache_folio_outlives_a_cow_in_another_process() -> None:
    """Issue 18: the sequence Hypothesis once found (scenario swap-cache-folio-outlives-cow).

    The child's write COW-copies away from the swap-cache folio, which then only the swap cache
    holds; the parent's fault takes it from there and drops the last swap reference.  The model
    freed the folio at that swap_free() and then mapped it.
    """
    mm = MoveMachine()
    mm.setup()
    steps = [mm.fork, lambda: mm.child_acts(write=False), lambda: mm.pin_cycle(i=0),
             lambda: mm.madvise(i=0, advice="pageout"), mm.fork, mm.fork,
             lambda: mm.child_acts(write=False), lambda: mm.child_acts(write=True),
             lambda: mm.pin_cycle(i=0)]
    for step in steps:
        step()
        mm.check()
    [view] = mm.p.observe(mm.src, P)
    assert (view.state, view.value, view.anon_exclusive, view.mapcount) == ("present", 0, True, 1)
    child = mm.m.live_processes()[-1]
    assert [(v.state, v.value) for v in child.observe(mm.src, P)] == [("present", 0x99)]
    assert not mm.m.swap.slots          # the last swap reference went, and the swap cache with it
