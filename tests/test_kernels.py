"""Kernel profiles: each modelled difference between kernels, checked on the simulator, and the
scenario format's ``kernel:`` / ``expect_by_kernel`` fields."""
from __future__ import annotations

import errno as E

import pytest

from uffdsim import kernels as K
from uffdsim.backends.sim import SimBackend
from uffdsim.mm.machine import Machine
from uffdsim.resources import corpus_dir
from uffdsim.runner import finish
from uffdsim.scenario import ScenarioError, load_scenario, parse_scenario


def run(name: str, kernel: "str | K.KernelProfile"):
    s = load_scenario(corpus_dir() / f"{name}.yaml")
    return finish(s, "sim", SimBackend(kernel=kernel).run(s))


def step(result, i: int) -> dict:
    return result.steps[i]


def test_default_profile_is_618_with_pt_reclaim() -> None:
    m = Machine()
    assert m.kernel.name == "6.18" and m.kernel.pt_reclaim
    assert Machine(kernel="6.12").kernel.pt_reclaim is False


def test_every_change_names_a_commit_and_an_existing_scenario() -> None:
    for c in K.CHANGES.values():
        assert c.commit and c.before and c.after and c.observed
        assert (corpus_dir() / f"{c.scenario}.yaml").exists(), c.key


def test_61_has_no_move_feature_and_move_gives_einval() -> None:
    r = run("api-move-feature-not-required", "6.1")
    assert r.status == "failed"           # the scenario expects MOVE to work
    moves = [s for s in r.steps if s["op"] == "move"]
    assert moves and all(s["errno"] == "EINVAL" and s["move"] is None for s in moves)
    assert K.PROFILES["6.1"].features == 0x1FFF and K.PROFILES["6.8"].features == 0x1FFFF


def test_61_refuses_the_move_feature_in_uffdio_api() -> None:
    r = run("api-user-mode-only", "6.1")   # asks for features: [move]
    uffd = next(s for s in r.steps if s["op"] == "uffd")
    assert uffd["errno"] == "EINVAL"


def test_zero_page_source_ebusy_on_68_moves_on_69() -> None:
    assert run("zero-page-move", "6.9").status == "passed"
    r = run("zero-page-move", "6.8")
    assert any(s["op"] == "move" and s["errno"] == "EBUSY" for s in r.steps)


def test_missing_vma_einval_on_68_enoent_on_69() -> None:
    assert run("vma-src-unmapped", "6.9").status == "passed"
    r = run("vma-src-unmapped", "6.8")
    assert any(s["op"] == "move" and s["errno"] == "EINVAL" for s in r.steps)


def test_mmap_changing_under_the_lock_einval_on_68() -> None:
    from uffdsim.mm.move import move_pages
    for kernel, want in (("6.8", -E.EINVAL), ("6.9", -E.EAGAIN)):
        m = Machine(kernel=kernel)
        p = m.spawn("main")
        a, b = p.mmap(1), p.mmap(1)

        class Ctx:
            mmap_changing = 1
        m.begin("UFFDIO_MOVE")
        assert move_pages(m, Ctx(), p.mm, a, b, 4096, 0) == want, kernel


def test_early_eagain_writes_the_field_from_615_and_in_612_stable() -> None:
    def move_field(kernel: str):
        r = run("mmap-changing-remove-event", kernel)
        return next(s for s in r.steps if s["op"] == "move")["move"]
    assert move_field("6.9") is None                     # unwritten before 95567729173e
    assert move_field("6.15") == -E.EAGAIN
    assert move_field("6.12") == -E.EAGAIN               # backported: seen on 6.12.118 in the lab


def test_huge_zero_write_612_vs_618() -> None:
    new, old = run("thp-huge-zero-write-allocates-thp", "6.18"), run("thp-huge-zero-write-allocates-thp", "6.12")
    assert new.status == old.status == "passed"          # each meets its own expectation
    # before the write both map the huge zero PMD, and PAGEMAP_SCAN says so on both (lab, 6.12.118)
    assert [p["thp"] for p in step(new, 3)["pages"]] == [p["thp"] for p in step(old, 3)["pages"]] == [True, True]
    assert [p["state"] for p in step(old, 5)["pages"]] == ["zero", "present"]
    assert [p["state"] for p in step(new, 5)["pages"]] == ["present", "present"]


def test_pt_reclaim_lets_a_thp_move_whole_after_dontneed() -> None:
    on = run("thp-dontneed-whole-table-pt-reclaim", "6.18")
    off = run("thp-dontneed-whole-table-pt-reclaim", K.get_profile("6.18", pt_reclaim=False))
    assert on.status == off.status == "passed"
    assert [p["thp"] for p in on.steps[-1]["pages"]] == [True, True]
    assert [p["thp"] for p in off.steps[-1]["pages"]] == [False, False]
    assert run("thp-dontneed-whole-table-pt-reclaim", "6.12").steps[-1]["pages"][0]["thp"] is False


def test_the_corpus_passes_on_every_profile_with_move() -> None:
    from uffdsim.conform import scenario_files
    for name in ("6.12", "6.15", "6.18"):
        b = SimBackend(kernel=name)
        bad = [s.name for f in scenario_files() for s in [load_scenario(f)]
               if finish(s, "sim", b.run(s)).status == "failed"]
        assert not bad, (name, bad)


def test_profile_for_release_and_config() -> None:
    assert K.profile_for_release("6.12.118+deb12-amd64").name == "6.12"
    assert K.profile_for_release("6.18.44-fc", {"pt_reclaim": False}).name == "6.18+pt_reclaim=n"
    assert K.profile_for_release("6.16.1").version == (6, 15)
    assert K.profile_for_release("6.16.1").pt_reclaim is True
    assert K.profile_for_release("6.10.3").name == "6.9"
    assert K.profile_for_release("6.12.1", move=False).name == "6.1"
    with pytest.raises(ValueError):
        K.get_profile("5.4")


@pytest.mark.parametrize("spec,name,want", [
    (">=6.9", "6.8", False), (">=6.9", "6.12", True), ("<6.13", "6.12", True), ("<6.13", "6.18", False),
    ("no pt_reclaim", "6.12", True), ("pt_reclaim", "6.12", False), ("pt_reclaim", "6.18", True),
    (">=6.12, no pt_reclaim", "6.12", True), (">=6.12, no pt_reclaim", "6.18", False),
])
def test_spec_matching(spec: str, name: str, want: bool) -> None:
    assert K.matches(spec, K.PROFILES[name]) is want


BASE = {"name": "x", "steps": [{"mmap": {"name": "a", "pages": 1}}]}


def test_scenario_kernel_field_skips_other_kernels() -> None:
    s = parse_scenario(dict(BASE, kernel=">=6.9"))
    assert finish(s, "sim", SimBackend(kernel="6.8").run(s)).status == "skipped"
    assert finish(s, "sim", SimBackend(kernel="6.9").run(s)).status == "passed"


@pytest.mark.parametrize("doc,field", [
    (dict(BASE, kernel=">=six"), "'kernel'"),
    ({"name": "x", "steps": [{"mmap": {"name": "a", "pages": 1}, "expect_by_kernel": {"~6": {"ok": True}}}]},
     "expect_by_kernel.~6"),
    ({"name": "x", "steps": [{"mmap": {"name": "a", "pages": 1}, "expect_by_kernel": {"<6.9": {"okay": True}}}]},
     "expect_by_kernel.<6.9"),
])
def test_bad_kernel_specs_are_one_line_errors(doc: dict, field: str) -> None:
    with pytest.raises(ScenarioError, match=field.replace(".", r"\.").replace("<", "<")):
        parse_scenario(doc)


def test_doctor_tells_a_61_user_that_move_needs_68() -> None:
    from uffdsim.backends.kernel.caps import Capabilities, Facility
    from uffdsim.backends.kernel.cli import doctor_text
    no = Facility(False, "not probed")
    caps = Capabilities("6.1.0-57-amd64", "x86_64", 0, 1, Facility(True, "usable via syscall", {}),
                        Facility(False, "kernel 6.1.0-57-amd64 does not offer UFFD_FEATURE_MOVE"),
                        no, no, no, no, no, no, no, no)
    text = doctor_text(caps)
    assert "has no UFFDIO_MOVE: it needs Linux 6.8 or later" in text
    assert "lab run --kernel 6.12" in text


def test_guard_advice_is_einval_before_613() -> None:
    from uffdsim.scenario import parse_scenario
    assert run("guard-install-zaps-page", "6.18").status == "passed"
    r612 = run("guard-install-zaps-page", "6.12")        # requires: [guard] -> skipped, like the kernel
    assert r612.status == "skipped" and "6.13" in r612.reason
    s = parse_scenario({"name": "g", "steps": [{"mmap": {"name": "a", "pages": 1}},
                                               {"madvise": {"at": "a", "pages": 1, "advice": "guard_install"}}]})
    assert finish(s, "sim", SimBackend(kernel="6.12").run(s)).steps[1]["errno"] == "EINVAL"
    assert finish(s, "sim", SimBackend(kernel="6.18").run(s)).steps[1]["errno"] is None


def test_split_remaps_zero_subpages_from_612() -> None:
    new, old = run("thp-split-zero-subpages-become-zero-page", "6.12"), run("thp-split-zero-subpages-become-zero-page", "6.9")
    assert new.status == old.status == "passed"
    assert new.steps[8]["pages"][1]["state"] == "zero" and old.steps[8]["pages"][1]["state"] == "present"


def test_hugepage_advice_on_part_of_a_hugepage_vma_splits_nothing() -> None:
    """Found by the THP fuzzer: madvise_update_vma() is a no-op when the flags are already set."""
    from uffdsim.scenario import parse_scenario
    s = parse_scenario({"name": "h", "requires": ["thp"], "steps": [
        {"mmap": {"name": "a", "pages": 512, "align": "2M"}},
        {"madvise": {"at": "a", "pages": 512, "advice": "hugepage"}},
        {"read": {"at": "a", "pages": 1}},
        {"madvise": {"at": "a", "pages": 1, "advice": "hugepage"}},
        {"observe": {"at": "a", "pages": 2}, "expect": {"pages": [{"state": "zero", "thp": True}] * 2}}]})
    assert finish(s, "sim", SimBackend().run(s)).status == "passed"


def test_writeprotect_over_part_of_a_huge_pmd_splits_it() -> None:
    """Found by the THP fuzzer on 6.18 (and the same on 6.12): change_pmd_range() splits first."""
    r = run("thp-writeprotect-part-splits-pmd", "6.18")
    assert r.status == "passed"
    assert [p["thp"] for p in r.steps[-1]["pages"]] == [False, False]


def test_the_recorded_612_vs_618_differences() -> None:
    from uffdsim.kernel_compare import lab_rows, observed_differences
    diffs = observed_differences()
    for name in ("thp-dontneed-whole-table-pt-reclaim", "thp-huge-zero-write-allocates-thp",
                 "guard-install-zaps-page"):
        assert name in diffs
    # was listed before the observer asked PAGEMAP_SCAN without PAGE_IS_GUARD on 6.12: not a kernel difference
    assert "thp-huge-zero-whole-pmd" not in diffs and "thp-vma-split-inside-huge-page" not in diffs
    assert "thp-split-zero-subpages-become-zero-page" not in diffs     # same on both (6.12+)
    rows = {r[0]: r for r in lab_rows()[1]}
    assert rows["6.12 (lab)"][5] == 0 and rows["6.12 (lab)"][3] >= 150      # 0 divergences, N >= 150
    assert rows["6.1 (lab)"][5] == 0


def test_a_named_uffd_that_failed_to_open_gives_ebadf_not_a_crash() -> None:
    """On 6.1 ``uffd: {features: [move]}`` fails (EINVAL), so later steps naming it meet a closed fd
    (EBADF), as a C program would; the simulator used to raise KeyError here."""
    from uffdsim.backends.sim import SimBackend
    from uffdsim.resources import corpus_dir
    from uffdsim.runner import finish
    from uffdsim.scenario import load_scenario

    scenario = load_scenario(corpus_dir() / "fork-zygote-heap-inherited.yaml")
    result = finish(scenario, "sim", SimBackend(kernel="6.1").run(scenario))
    by_op = [(s["op"], s["errno"]) for s in result.steps]
    assert ("uffd", "EINVAL") in by_op
    assert ("register", "EBADF") in by_op and ("move", "EBADF") in by_op


def test_lab_rows_say_how_many_scenarios_the_timed_run_ran() -> None:
    """A record updated with ``conform --update`` re-ran one scenario: its batch seconds time that
    one run, not the whole corpus, and A2's table must say so (it used to show only the totals)."""
    from uffdsim.kernel_compare import lab_rows
    doc = {"kernel": "6.12.118", "profile": "6.12", "update": {"of": "x", "rerun": 1, "kept": 263},
           "totals": {"scenarios": 264, "agree": 256, "divergences": 0, "skipped": 8},
           "lab": {"seconds": {"boot": 17.0, "total": 18.5}}}
    full = {"kernel": "6.1.0", "profile": "6.1", "totals": {"scenarios": 264, "agree": 28,
            "divergences": 0, "skipped": 236}, "lab": {"seconds": {"boot": 13.7, "total": 49.3}}}
    header, rows = lab_rows({"6.12 (lab)": doc, "6.1 (lab)": full})
    col = header.index("last run")
    assert header.index("boot s") > col and rows[0][col] == 1 and rows[1][col] == 264


def test_split_refusal_stable_fix_is_listed_and_ebusy_on_every_profile() -> None:
    """A2 lists the 2026 stable fix (split_folio()'s -EAGAIN becomes EBUSY) with its releases; the
    model answers EBUSY on every profile with MOVE and switches nothing for it (no livelock)."""
    from uffdsim.kernel_compare import changes_rows
    c = K.UNMODELLED["split_ebusy"]
    assert c.key not in K.CHANGES and (corpus_dir() / f"{c.scenario}.yaml").exists()
    header, rows = changes_rows()
    row = dict(zip(header, next(r for r in rows if r[1] == "split_ebusy")))
    assert "6.12.118" in row["since"] and "6.18.44" in row["since"]
    assert "livelock" in row["before"] and "EBUSY" in row["after"]
    assert "does not model the livelock" in row["observed"]
    for name, prof in K.PROFILES.items():
        if prof.has("move"):
            assert step(run("mthp-ref-ebusy", prof), 7)["errno"] == "EBUSY", name


def test_the_618_retry_defect_row_says_and_later() -> None:
    from uffdsim.kernel_compare import changes_rows
    header, rows = changes_rows()
    row = dict(zip(header, next(r for r in rows if r[1] == "move_batch")))
    assert row["since"] == "6.18 and later"
