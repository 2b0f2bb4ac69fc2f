"""The page fields read from /proc/kpageflags and /proc/kpagecount (anon_exclusive, mapcount, order):
what the simulator reports for them, that conform compares them, and the model paths they exposed."""
from __future__ import annotations

from uffdsim.backends.sim import SimBackend
from uffdsim.conform import Report, conform_one
from uffdsim.resources import corpus_dir
from uffdsim.runner import NOT_OBSERVABLE, ScenarioResult, compare, compared_page_fields, finish
from uffdsim.scenario import loads_scenario

# a PTE-mapped THP, COW-shared with a child that exits; the parent then writes page 9 (reused, 6.15+)
PTE_THP_AFTER_FORK = """
name: t
requires: [thp, fork]
steps:
  - mmap: {name: src, pages: 512, align: 2M}
  - mmap: {name: dst, pages: 16}
  - madvise: {at: src, pages: 512, advice: hugepage}
  - write: {at: src, pages: 512, value: 0x48}
  - mprotect: {at: src+8, pages: 1, prot: r}
  - mprotect: {at: src+8, pages: 1, prot: rw}
  - fork: {child: c}
  - exit: {proc: c}
  - write: {at: src+9, pages: 1, value: 0x49}
  - uffd: {}
  - register: {at: dst, pages: 16, mode: [missing]}
  - move: {dst: dst+9, src: src+9, pages: 1}
  - observe: {at: src, pages: 10}
"""


def run(text: str, kernel: str = "6.18") -> ScenarioResult:
    s = loads_scenario(text)
    return finish(s, "sim", SimBackend(kernel=kernel).run(s))


def test_a_move_from_a_pte_mapped_thp_checks_the_head_pages_exclusive_flag() -> None:
    # 6.18 move_pages_pte(): PageAnonExclusive(&folio->page) before split_folio(); page 9 is exclusive
    # (reused by the write), the head is not: EBUSY, as the kernel answers (thp-kpageflags-shows-head-flag)
    steps = run(PTE_THP_AFTER_FORK).steps
    assert (steps[11]["errno"], steps[11]["move"]) == ("EBUSY", -16)


def test_a_write_to_a_pte_mapped_thp_mapped_by_one_mm_reuses_the_page_since_6_15() -> None:
    text = PTE_THP_AFTER_FORK.replace("  - move: {dst: dst+9, src: src+9, pages: 1}\n", "")
    new, old = run(text).steps[11]["pages"][9], run(text, "6.12").steps[11]["pages"][9]
    assert (new["order"], new["value"]) == (9, 0x49)       # still a page of the THP
    assert (old["order"], old["value"]) == (0, 0x49)       # 6.12 copies it into a small folio


def test_kpageflags_shows_the_head_flag_for_every_page_of_a_large_folio_since_6_10() -> None:
    text = PTE_THP_AFTER_FORK.replace("  - move: {dst: dst+9, src: src+9, pages: 1}\n", "")
    page9 = run(text).steps[11]["pages"][9]
    assert (page9["order"], page9["anon_exclusive"], page9["mapcount"]) == (9, False, 1)


def test_observe_reports_the_kpage_fields_only_for_mapped_pages() -> None:
    pages = run("""
name: t
steps:
  - mmap: {name: a, pages: 3}
  - write: {at: a, pages: 1, value: 1}
  - read: {at: a+1, pages: 1}
  - observe: {at: a, pages: 3}
""").steps[3]["pages"]
    assert [(p["anon_exclusive"], p["mapcount"], p["order"]) for p in pages] == [
        (True, 1, 0), (False, 0, 0), (None, None, None)]


def test_compare_reports_a_difference_in_anon_exclusive_or_mapcount_and_counts_what_it_compared() -> None:
    a = run("""
name: t
steps:
  - mmap: {name: a, pages: 1}
  - write: {at: a, pages: 1, value: 1}
  - observe: {at: a, pages: 1}
""")
    b = ScenarioResult(a.name, "kernel", a.status, [dict(s) for s in a.steps])
    b.steps[2]["pages"] = [dict(a.steps[2]["pages"][0], anon_exclusive=False, mapcount=2, order=NOT_OBSERVABLE)]
    assert {d["field"] for d in compare(a, b)} == {"pages[0].anon_exclusive", "pages[0].mapcount"}
    counts = compared_page_fields(a, b)
    assert counts["anon_exclusive"] == counts["mapcount"] == 1 and counts["order"] == 0


def test_conform_counts_the_page_fields_it_compared() -> None:
    sim = SimBackend()
    entry = conform_one(corpus_dir() / "move-after-fork.yaml", sim, sim)
    report = Report("sim", "", [entry])
    assert report.page_fields["anon_exclusive"] == report.page_fields["mapcount"] == 2
    assert report.totals["page_fields"] == 2 * 7
    assert report.fields_line().startswith("page fields compared: 14 (state 2,")


def test_a_missing_fault_handed_to_userfaultfd_leaves_a_page_table_so_a_thp_moved_there_is_split() -> None:
    # do_anonymous_page() calls pte_alloc() before handle_userfault(): the destination PMD is no
    # longer none, so move_pages() splits the source THP instead of moving the PMD (the kernel
    # selftest move-pmd-split; the sim moved the PMD whole before)
    steps = run("""
name: t
requires: [thp, threads]
steps:
  - mmap: {name: src, pages: 512, align: 2M}
  - mmap: {name: dst, pages: 512, align: 2M}
  - madvise: {at: src, pages: 512, advice: hugepage}
  - madvise: {at: dst, pages: 512, advice: nohugepage}
  - write: {at: src, pages: 512, value: 1}
  - uffd: {}
  - register: {at: dst, pages: 512, mode: [missing]}
  - fault_async: {thread: t, at: dst, write: false}
  - move: {dst: dst, src: src, pages: 512, mode: [allow_src_holes]}
  - thread: {thread: t}
  - observe: {at: dst, pages: 1}
""").steps
    assert steps[8]["move"] == 512 * 4096 and steps[9]["blocked"] is False
    assert (steps[10]["pages"][0]["thp"], steps[10]["pages"][0]["order"]) == (False, 0)


def test_all_pages_holds_every_observed_page_to_one_expectation() -> None:
    text = """
name: t
steps:
  - mmap: {name: a, pages: 3}
  - write: {at: a, pages: 2, value: 1}
  - observe: {at: a, pages: 2}
    expect: {all_pages: {state: present, value: 1}}
  - observe: {at: a, pages: 3}
    expect: {all_pages: {value: 1}}
"""
    steps = run(text).steps
    assert steps[2]["expect"] == "met"
    assert steps[3]["expect"] == "unmet: page 2 value: expected 1, got None"


def test_a_ksm_pages_mapcount_is_not_observable_on_the_kernel(monkeypatch) -> None:
    # KSM merges equal pages of every process on the machine: two corpus runs at once made the
    # kernel count 3 mappings where the scenario has 2 (ksm-merged-ebusy)
    from uffdsim.backends.kernel import observe as O
    from uffdsim.backends.kernel import sys as k
    monkeypatch.setattr(k, "kpagecount", lambda pfn: 3)
    monkeypatch.setattr(k, "folio_span", lambda pfn, flags=None: (pfn, 1))
    flags = 1 << k.KPF["anon"] | 1 << k.KPF["ksm"]
    view = {"state": "present", "thp": False}
    O.kpage_view(view, 0x1234, flags, True, [])
    assert view["hidden"] == ["mapcount"] and view["anon_exclusive"] is False and view["order"] == 0
    plain = {"state": "present", "thp": False}
    O.kpage_view(plain, 0x1234, 1 << k.KPF["anon"] | 1 << k.KPF_OWNER_2, True, [])
    assert "hidden" not in plain and (plain["anon_exclusive"], plain["mapcount"]) == (True, 3)
